"""``jdrl demo`` and the misalignment benchmark: JDRL's effect, measured against the truth.

Synthetic misaligned defocus pairs are made from sharp photos (some photos
only for training, others held out), the same small network is trained with the
same seed, data and number of steps under each *variant* (plain pixel loss,
JDRL, an ablation, the pixel loss on perfectly aligned pairs -- the "oracle"
upper bound, ...), and every model is scored on the held-out pairs against the
**true aligned** sharp image, which only synthetic data has.

``jdrl demo`` runs pixel vs JDRL (and the oracle) on scikit-image's bundled
photos; ``benchmarks/misalignment.py`` runs any list of variants on any folder.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from jdrl.data.synthetic import DEFAULT_SOURCE_NAMES, SynthParams, default_sources
from jdrl.files import write_text
from jdrl.images import write_image
from jdrl.models import DEFAULT_MODEL, model_id
from jdrl.nets import create_net

if TYPE_CHECKING:  # the CLI imports this module to build its --help: no torch at import time
    import torch

    from jdrl.training.config import TrainConfig

#: bundled photos kept out of training; the demo scores the models on these only
HELD_OUT = ("coffee", "motorcycle_right", "astronaut", "chelsea")
DEMO_PANEL_SIDE = 192  # px: the demo strips put five pictures side by side
NEVER = 10**9  # a decay interval no run reaches: a constant learning rate
#: the demo's network: NAFNet at width 16 with one block per level (1.14 M parameters), no TLC
DEMO_NAFNET = {"width": 16, "enc_blk_nums": [1, 1, 1, 1], "dec_blk_nums": [1, 1, 1, 1], "middle_blk_num": 1,
               "tlc": False}
#: where every variant starts: the bundled model (the demo's network, pretrained on aligned synthetic pairs of the
#: demo's training photos by benchmarks/pretrain.py; docs/MODEL_CARD.md)
START = model_id(DEFAULT_MODEL)
#: what a run from random weights uses instead (the demo's schedule and blur before the bundled model: lr 2e-3, the
#: released warm-up stage, blur <= 8 px; chosen by the learning curves of docs/RESULTS.md)
FROM_SCRATCH = {"lr": 2e-3, "warmup": 50, "reblur_only": 0, "r_max": 8.0}
#: metric columns against the truth -> short names in tables and results.json
COLUMNS = {"psnr_aligned": "psnr", "ssim_aligned": "ssim", "mae_aligned": "mae", "flow_error": "flow_error"}


@dataclass
class DemoSettings:
    """One experiment's scale; every variant of it shares these."""

    # Every variant fine-tunes the bundled model (``init``), which was pretrained on aligned pairs with blur up to
    # 8 px: the demo's pairs blur up to 12 px (the start gains +2.4 dB there, the aligned oracle can still add to
    # it). lr 5e-4 with a cosine decay, no warm-up stage (the start already deblurs) and 50 steps that train only
    # the reblurring module R first (the authors' fine-tuning recipe) were chosen by the fine-tuning tries in
    # docs/RESULTS.md ("The bundled model: what the demo fine-tunes"): lr 2e-3 lost more of the start, 1e-4 did
    # not keep it either. 400 steps of pixel + JDRL fit in the 10 minutes.
    steps: int = 400
    width: float = 0.25  # UNet channel multiplier (0.25: 16 ... 256 channels), with --net unet
    residual: bool = True  # the UNet starts as the identity (jdrl.nets.unet): small budgets train far better
    #: the network: any registered name (``jdrl nets``) and its options; for ``unet`` the options default to
    #: ``width``/``residual`` above, for any other network ``net_options`` are all it gets
    net: str = "nafnet_w32"
    net_options: dict = field(default_factory=lambda: dict(DEMO_NAFNET))
    crop: int = 96
    batch: int = 8
    train_pairs: int = 96
    eval_pairs: int = 12
    lr: float = 5e-4
    decay: str = "cosine"  # "cosine": down to 0 over the steps; "step": a constant learning rate here
    warmup: int = 0  # steps of the released warm-up stage (JDRL variants; 50 for a run from scratch)
    # the pairs: 128 px, blur up to 12 px, the realistic SDD-like misalignment (global zoom + shift, focus
    # breathing, a smooth warp, two moving (occluding) regions and photometric differences of the GT)
    synth: SynthParams = field(default_factory=lambda: SynthParams.with_misalignment(
        "sdd", size=128, r_max=12.0, exposure=0.02, noise=0.005))
    #: the checkpoint every variant starts from (any --checkpoint source; the bundled model by default, whose network
    #: ``net``/``net_options`` must describe); None: random weights (the demo before the bundled model)
    init: str | None = START
    reblur_only: int = 50  # JDRL variants: first steps that train only the reblurring module R (the finetune preset)
    reblur_only_lr: float | None = None  # the learning rate of those steps (None: lr)
    val_every: int = 100  # > 0: score the held-out pairs every N steps during training (RUN/val.csv, the curves)
    reblur_features: int = 16
    flow: str = "dis"  # training flow of the JDRL variants
    score_flow: str = "dis"  # flow for the geometric error
    seed: int = 0
    device: str = "cpu"
    oracle: bool = False
    held_out: tuple[str, ...] = field(default=HELD_OUT)


@dataclass(frozen=True)
class Variant:
    """One training run of an experiment: a name, an objective, extra config overrides."""

    name: str
    objective: str = "jdrl"  # "jdrl" or "pixel"
    overrides: tuple[str, ...] = ()
    aligned_targets: bool = False  # train on the true aligned image (the oracle)


PIXEL, JDRL, ORACLE = Variant("pixel", "pixel"), Variant("jdrl"), Variant("oracle", "pixel", aligned_targets=True)


def from_scratch(settings: DemoSettings) -> DemoSettings:
    """``settings`` for random weights: no ``init`` and the :data:`FROM_SCRATCH` schedule and blur."""

    return replace(settings, init=None, lr=FROM_SCRATCH["lr"], warmup=FROM_SCRATCH["warmup"],
                   reblur_only=FROM_SCRATCH["reblur_only"], synth=replace(settings.synth, r_max=FROM_SCRATCH["r_max"]))


def make_datasets(settings: DemoSettings, train_sources=None, eval_sources=None):
    """``(train, held-out)`` synthetic sets; by default the bundled photos split by ``held_out``."""
    from jdrl.data.datasets import SyntheticPairs

    if train_sources is None:
        train_sources = default_sources([n for n in DEFAULT_SOURCE_NAMES if n not in settings.held_out])
        eval_sources = default_sources(settings.held_out)
    params = settings.synth
    train_set = SyntheticPairs(settings.train_pairs, params, settings.seed, train_sources,
                               crop=settings.crop, augment=True)
    eval_set = SyntheticPairs(settings.eval_pairs, params, settings.seed + 1, eval_sources)
    return train_set, eval_set


def variant_config(settings: DemoSettings, variant: Variant) -> TrainConfig:
    """The training config of one variant: the demo's settings as config objects, then the variant's overrides."""
    from jdrl.losses import JDRLConfig
    from jdrl.losses.objectives import OBJECTIVES
    from jdrl.training import load_train_config
    from jdrl.training.config import (
        DataConfig,
        NetConfig,
        OptimConfig,
        RunConfig,
        ScheduleConfig,
        TrainConfig,
    )

    options = dict(settings.net_options)
    if settings.net == "unet":
        options = {"width": settings.width, "dropout": 0.0, "residual": settings.residual, **options}
    every = settings.val_every if settings.val_every > 0 else settings.steps
    objective = OBJECTIVES.get(variant.objective)
    config = TrainConfig(
        net=NetConfig(settings.net, options, init=settings.init),
        data=DataConfig(crop=settings.crop, batch_size=settings.batch),
        loss=JDRLConfig(objective=variant.objective, flow=settings.flow, reblur_features=settings.reblur_features),
        optim=OptimConfig(lr=settings.lr, reblur_only_lr=settings.reblur_only_lr, decay=settings.decay,
                          decay_every=NEVER),
        schedule=ScheduleConfig(unit="step", total=settings.steps,
                                warmup=settings.warmup if objective.deforms else 0,  # the warm-up stage deforms
                                reblur_only=settings.reblur_only if objective.reblurs else 0,  # only R trains
                                save_every=settings.steps, val_every=every,
                                log_every=max(1, min(10, settings.steps))),
        run=RunConfig(seed=settings.seed, device=settings.device),
    )
    return load_train_config(config, variant.overrides)


def train_variant(settings: DemoSettings, variant: Variant, train_set, run_dir: Path, quiet: bool,
                  val_set=None) -> torch.nn.Module:
    """Train one variant (from ``settings.init``, or from random weights) and return the run's result (``RUN/model/``, eval mode): the last weights,
    never a "best", and their exponential moving average when the variant sets ``run.ema_decay``.

    ``val_set`` (with ``settings.val_every > 0``) is scored every ``val_every`` steps into ``RUN/val.csv``."""
    from jdrl.training import train
    from jdrl.training.data import AlignedTargets

    data = AlignedTargets(train_set) if variant.aligned_targets else train_set
    val = val_set if settings.val_every > 0 else None
    folder = train(variant_config(settings, variant), run_dir=run_dir, datasets=(data, val), quiet=quiet,
                   overwrite=True)
    # the name the user chose (a package.module:Class one included) is what the run's own model folder holds
    return create_net(settings.net, checkpoint=folder / "model", map_location=settings.device)


def run_variants(
    settings: DemoSettings, variants: Sequence[Variant], out: Path, datasets=None, quiet: bool = False,
    keep_images: bool = False,
) -> dict:
    """Train and score every variant; ``{"input": EvalResult, "start": EvalResult (with ``settings.init``),
    name: EvalResult, ..., "_seconds": {...}}``."""
    from jdrl.evaluation.protocol import evaluate
    from jdrl.flow import build_flow

    # the start first: a bad --init fails before any pair is made or scored
    start_net = None if settings.init is None else create_net(checkpoint=settings.init, map_location=settings.device)
    train_set, eval_set = datasets or make_datasets(settings)
    flow = build_flow(settings.score_flow)
    # full-size pictures (up to 4x the strips' side) so the detail crops are 1:1
    side = max(DEMO_PANEL_SIDE, min(settings.synth.size, 4 * DEMO_PANEL_SIDE))
    score = dict(flow=flow, keep_images=keep_images, thumbnail_size=side, device=settings.device)
    results = {"input": evaluate(eval_set, None, label="input", **score)}
    if start_net is not None:  # the start, untouched: what fine-tuning must not lose
        results["start"] = evaluate(eval_set, start_net, label="start", **score)
    seconds = {}
    for variant in variants:
        start = time.perf_counter()
        _say(quiet, f"training {variant.name} ({settings.steps} steps)...")
        net = train_variant(settings, variant, train_set, out / "runs" / _slug(variant.name), quiet, eval_set)
        seconds[variant.name] = round(time.perf_counter() - start, 1)
        results[variant.name] = evaluate(eval_set, net, label=variant.name, **score)
    results["_seconds"] = seconds
    return results


def mask_scores(net, eval_set, mode: str = "reference", flow=None, device: str = "cpu") -> dict:
    """How well the calibration mask finds the pixels with no correct correspondence, on held-out pairs.

    As in training: the flow from ``net``'s output to the (misaligned) ground truth, ``calibration_mask(flow,
    mode)``; dropped = mask 0. Truly without correspondence ("bad"): the pair's true ``occlusion`` or,
    for ``*_view`` keys as well, a true flow leaving the frame. Pooled over all pixels of ``eval_set``:
    ``precision`` = |dropped & occluded| / |dropped|, ``recall`` = |dropped & occluded| / |occluded|,
    ``precision_view``/``recall_view`` with occluded-or-out-of-view, ``dropped`` and ``occluded`` fractions.
    ``nan`` where a denominator is 0. ``net=None``: the blurry input itself.
    """
    import torch

    from jdrl.flow import build_flow
    from jdrl.flow.mask import calibration_mask
    from jdrl.inference import deblur_tensor

    flow = flow if flow is not None else build_flow("dis")
    counts = dict.fromkeys(("dropped", "occluded", "hit", "bad", "hit_bad", "pixels"), 0)
    if net is not None:
        net.eval()
    with torch.no_grad():
        for index in range(len(eval_set)):
            item = eval_set[index]
            if item.get("occlusion") is None:
                raise ValueError("mask_scores needs pairs with a true occlusion mask (SyntheticPairs)")
            blur, gt = item["blur"][None].to(device), item["sharp"][None].to(device)
            output = blur.clamp(0, 1) if net is None else deblur_tensor(net, blur).float().clamp(0, 1)
            dropped = calibration_mask(flow(output, gt), mode)[0, 0].cpu() < 0.5
            occluded = item["occlusion"][0] > 0.5
            true_flow = item["flow"]
            height, width = true_flow.shape[1:]
            qx = torch.arange(width, dtype=torch.float32)[None, :] + true_flow[0]
            qy = torch.arange(height, dtype=torch.float32)[:, None] + true_flow[1]
            bad = occluded | (qx < 0) | (qx > width - 1) | (qy < 0) | (qy > height - 1)
            counts["dropped"] += int(dropped.sum())
            counts["occluded"] += int(occluded.sum())
            counts["hit"] += int((dropped & occluded).sum())
            counts["bad"] += int(bad.sum())
            counts["hit_bad"] += int((dropped & bad).sum())
            counts["pixels"] += dropped.numel()

    def ratio(a: int, b: int) -> float:
        return a / b if b else float("nan")

    return {"precision": ratio(counts["hit"], counts["dropped"]), "recall": ratio(counts["hit"], counts["occluded"]),
            "precision_view": ratio(counts["hit_bad"], counts["dropped"]),
            "recall_view": ratio(counts["hit_bad"], counts["bad"]),
            "dropped": ratio(counts["dropped"], counts["pixels"]), "occluded": ratio(counts["occluded"], counts["pixels"])}


def truth_table(results: dict) -> dict:
    """``{row: {psnr, ssim, mae, flow_error}}`` against the true aligned images."""
    return {row: {short: result.means.get(column) for column, short in COLUMNS.items()}
            for row, result in results.items() if not row.startswith("_")}


def run_demo(out_dir: str | os.PathLike = "jdrl-demo", settings: DemoSettings | None = None, quiet: bool = False) -> dict:
    """Pixel loss vs JDRL (vs the oracle); writes the report and returns :func:`truth_table`."""
    settings = settings or DemoSettings()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    variants = [PIXEL, JDRL] + ([ORACLE] if settings.oracle else [])
    results = run_variants(settings, variants, out, quiet=quiet, keep_images=True)
    seconds = results.pop("_seconds")
    table = truth_table(results)
    _write_report(out, settings, results, table, seconds, time.perf_counter() - started)
    return table


def _slug(name: str) -> str:
    """A variant name as a folder name ("#2 w/o deformation" -> "2_w_o_deformation")."""
    return "_".join("".join(c if c.isalnum() else " " for c in name).split())


def _say(quiet: bool, message: str) -> None:
    if not quiet:
        print(message, flush=True)


# ----------------------------------------------------------------------------- report


NUMBER_FORMATS = {"psnr": ".2f", "ssim": ".4f", "mae": ".4f", "flow_error": ".3f"}


def markdown(table: dict) -> str:
    lines = ["| model | PSNR (dB) | SSIM | MAE | flow error (px) |", "|---|---|---|---|---|"]
    for row, values in table.items():
        lines.append(f"| {row} | " + " | ".join(f"{values[k]:{spec}}" for k, spec in NUMBER_FORMATS.items()) + " |")
    return "\n".join(lines)


def _summary(settings: DemoSettings, table: dict, pairs: int) -> str:
    jdrl, pixel = table["jdrl"], table["pixel"]
    start = (f"every model starts from {settings.init}" if settings.init is not None
             else "every model starts from random weights")
    text = (f"Scored on {pairs} held-out pairs ({', '.join(settings.held_out)}) against the true aligned image; "
            f"{start}. JDRL vs input: {jdrl['psnr'] - table['input']['psnr']:+.2f} dB")
    if "start" in table:
        text += f"; vs start: {jdrl['psnr'] - table['start']['psnr']:+.2f} dB"
    text += (f"; vs pixel loss: {jdrl['psnr'] - pixel['psnr']:+.2f} dB PSNR, geometric error "
             f"{jdrl['flow_error']:.3f} px vs {pixel['flow_error']:.3f} px")
    if "oracle" in table:
        text += f"; vs oracle: {jdrl['psnr'] - table['oracle']['psnr']:+.2f} dB"
    return text + "."


def results_markdown(summary: str, table: dict) -> str:
    """``results.md``: the summary line and the table, every row once."""
    return f"# jdrl demo\n\n{summary}\n\n{markdown(table)}\n"


def _strips(out: Path, results: dict) -> dict[str, str]:
    from jdrl.evaluation.report import make_strip

    paths = {}
    first = results["input"]
    for name in [row["name"] for row in first.rows]:
        panels = {"input": first.images[name]["input"]}
        panels.update({row: results[row].images[name]["output"] for row in results if row != "input"})
        panels["truth (aligned)"] = first.images[name]["aligned truth"]
        panels["GT (misaligned)"] = first.images[name]["GT"]
        path = Path("strips") / f"{name}.png"
        write_image(out / path, make_strip(panels, max_side=DEMO_PANEL_SIDE).astype("float32") / 255.0)
        paths[name] = str(path)
    return paths


def detail_box(image, side: int) -> tuple[int, int]:
    """``(top, left)`` of the ``side`` px square of ``image`` ``(3, H, W)`` with the most gradient energy."""
    import torch

    gray = image.float().mean(0)
    energy = (gray[1:, :-1] - gray[:-1, :-1]).abs() + (gray[:-1, 1:] - gray[:-1, :-1]).abs()
    side = min(side, energy.shape[0], energy.shape[1])
    sums = torch.nn.functional.avg_pool2d(energy[None, None], side, stride=max(1, side // 4))[0, 0]
    row, col = divmod(int(sums.argmax()), sums.shape[1])
    return row * max(1, side // 4), col * max(1, side // 4)


def _crop_strips(out: Path, results: dict, side: int = 48, zoom: int = 4) -> list[str]:
    """Per held-out image, the most detailed ``side`` px square of every picture, enlarged ``zoom``x (nearest)."""
    from jdrl.evaluation.report import make_strip

    paths = []
    first = results["input"]
    for name in [row["name"] for row in first.rows]:
        pictures = {"input": first.images[name]["input"]}
        pictures.update({row: results[row].images[name]["output"] for row in results if row != "input"})
        pictures["truth (aligned)"] = first.images[name]["aligned truth"]
        top, left = detail_box(pictures["truth (aligned)"], side)
        crops = {label: picture[:, top:top + side, left:left + side].repeat_interleave(zoom, 1)
                 .repeat_interleave(zoom, 2) for label, picture in pictures.items()}
        path = Path("crops") / f"{name}.png"
        write_image(out / path, make_strip(crops, max_side=side * zoom).astype("float32") / 255.0)
        paths.append(str(path))
    return paths


def _validation_figure(out: Path, results: dict, runs: list[str]) -> list[str]:
    from jdrl.evaluation.plot import plot_validation

    folders = {run: out / "runs" / _slug(run) for run in runs}
    if not any((folder / "val.csv").is_file() for folder in folders.values()):
        return []
    baseline = {"psnr_aligned": results["input"].means.get("psnr_aligned"),
                "flow_error": results["input"].means.get("flow_error")}
    path = plot_validation(folders, out / "validation.png", baseline=baseline,
                           title="held-out pairs during training (against the true aligned image)")
    return [str(path.relative_to(out))]


def _curves(out: Path, runs: list[str]) -> list[str]:
    from jdrl.evaluation.plot import plot_run

    return [str(plot_run(out / "runs" / _slug(run), out / f"curves_{_slug(run)}.png").relative_to(out)) for run in runs]


def _write_report(out: Path, settings: DemoSettings, results: dict, table: dict, seconds: dict, total: float) -> None:
    from jdrl.evaluation.report import write_report

    (out / "results.json").write_text(json.dumps(table, indent=2) + "\n")
    (out / "settings.json").write_text(json.dumps({**asdict(settings), "train_seconds": seconds,
                                                   "total_seconds": round(total, 1)}, indent=2) + "\n")
    summary = _summary(settings, table, len(results["input"].rows))
    write_text(out / "results.md", results_markdown(summary, table))
    strips = _strips(out, results)
    models = list(seconds)  # the trained variants (not the input, not the untouched start)
    validation = _validation_figure(out, results, models)
    crops = _crop_strips(out, results)
    curves = _curves(out, models)
    figures = [("held-out PSNR and geometric error against the training step (dashed: the blurry input)", path)
               for path in validation]
    figures += [(f"detail, 4x (nearest neighbour): {Path(path).stem}", path) for path in crops]
    figures += [(f"training curves: {Path(path).stem.removeprefix('curves_')}", path) for path in curves]
    write_report([results[row] for row in table], out, strips=strips, title="jdrl demo", intro=summary,
                 strip_note="the blurry input, each model's output, the true aligned image, and the misaligned "
                            "ground truth that training saw", figures=figures)
