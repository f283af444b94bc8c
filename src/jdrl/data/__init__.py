"""Paired datasets: discovery of the supported layouts, validation, crops, synthesis.

Import from the submodules (``jdrl.data.pairs``, ``jdrl.data.datasets``,
``jdrl.data.synthetic``, ``jdrl.data.prepare``); this package imports nothing
heavy on its own.
"""
