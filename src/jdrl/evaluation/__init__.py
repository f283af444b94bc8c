"""Evaluation with the paper's protocol: metrics, dataset scoring, reports."""
