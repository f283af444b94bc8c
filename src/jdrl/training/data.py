"""Building the training and validation datasets a config describes (validated before anything runs)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from torch.utils.data import Dataset

from jdrl.data.datasets import EpochSeeded, PairedImageDataset, SyntheticPairs
from jdrl.data.pairs import MIN_SCORED_SIDE, load_pairs
from jdrl.data.synthetic import default_sources, folder_sources
from jdrl.errors import ConfigError
from jdrl.training.config import DataConfig, DataSource, SyntheticData


class AlignedTargets(EpochSeeded):
    """Synthetic pairs whose training target is the true aligned image (the oracle upper bound)."""

    def __init__(self, dataset: EpochSeeded):
        self.dataset = dataset

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        sample = dict(self.dataset[index])
        sample["sharp"] = sample["aligned"]
        # the target is now the truth itself: no motion to it, and every pixel has its correspondence
        if sample.get("flow") is not None:
            sample["flow"] = sample["flow"] * 0
        if sample.get("occlusion") is not None:
            sample["occlusion"] = sample["occlusion"] * 0
        return sample


def _synthetic(config: DataConfig, synthetic: SyntheticData) -> tuple[Dataset, Dataset | None]:
    params = synthetic.generator_params()
    sources = folder_sources(synthetic.sources) if synthetic.sources else default_sources()
    if synthetic.val_sources:
        val_sources = folder_sources(synthetic.val_sources)
    elif synthetic.holdout:
        if synthetic.holdout >= len(sources):
            raise ConfigError(f"data.synthetic.holdout={synthetic.holdout} leaves no training source image")
        sources, val_sources = sources[: -synthetic.holdout], sources[-synthetic.holdout :]
    else:
        val_sources = sources
    crop = config.crop if config.crop is not None and config.crop < synthetic.size else None
    train = SyntheticPairs(synthetic.train, params, synthetic.seed, sources, crop=crop, augment=config.augment)
    train.crop_sampling = config.crop_sampling
    if synthetic.aligned_targets:
        train = AlignedTargets(train)
    val = None
    if synthetic.val:
        first = synthetic.train if val_sources is sources else 0
        val = SyntheticPairs(synthetic.val, params, synthetic.seed + 1, val_sources, first_index=first)
    return train, val


def _folder(source: DataSource, crop: int | None, augment: bool, seed: int, skip_bad: bool,
            progress: Callable[[Iterable], Iterable] | None, what: str, crop_sampling: str = "uniform",
            min_size: int | None = None, min_what: str = "crop") -> PairedImageDataset:
    if source.root is None:
        raise ConfigError(f"data.{what}.root is not set: give -o data.{what}.root=PATH (or use the 'synthetic' preset)")
    pairs = load_pairs(source.root, source.layout, source.split, source.blur_dir, source.sharp_dir,
                       min_size=min_size or crop, skip_bad=skip_bad, progress=progress, min_what=min_what)
    selected = pairs.pairs[: source.limit] if source.limit else pairs.pairs
    return PairedImageDataset(selected, crop=crop, augment=augment, seed=seed, crop_sampling=crop_sampling)


def build_datasets(config: DataConfig, seed: int, progress=None) -> tuple[Dataset, Dataset | None]:
    """``(train, val)``; every file is checked first and all problems are reported together."""
    if config.synthetic is not None:
        return _synthetic(config, config.synthetic)
    train = _folder(config.train, config.crop, config.augment, seed, config.skip_bad, progress, "train",
                    config.crop_sampling)
    val = None
    if config.val is not None:
        # checked as fully as the training set before step 1: a validation image too small to score would
        # otherwise stop the run at its first validation
        val = _folder(config.val, config.val_crop, False, seed, config.skip_bad, progress, "val",
                      min_size=max(config.val_crop or 0, MIN_SCORED_SIDE),
                      min_what="validation minimum (val_crop, or SSIM's 7x7 window)")
    return train, val
