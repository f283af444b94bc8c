import numpy as np
import torch
from torch.utils.data import DataLoader

from jdrl.data.datasets import PairedImageDataset, dihedral, stack_samples
from jdrl.data.pairs import discover_pairs
from jdrl.images import write_image
from tests.conftest import textured_image


def _dataset(tmp_path, rng, **kwargs):
    for i in range(4):
        image = textured_image(rng, 40, 48)
        write_image(tmp_path / "blur" / f"{i}.png", image)
        write_image(tmp_path / "gt" / f"{i}.png", image)
    return PairedImageDataset(discover_pairs(tmp_path).pairs, **kwargs)


def _epoch(dataset, workers):
    loader = DataLoader(dataset, batch_size=2, num_workers=workers, collate_fn=stack_samples)
    return torch.cat([batch["blur"] for batch in loader])


def test_crops_are_reproducible_under_a_seed_with_any_worker_count(tmp_path, rng):
    dataset = _dataset(tmp_path, rng, crop=16, augment=True, seed=3)
    first = _epoch(dataset, 0)
    assert first.shape == (4, 3, 16, 16)
    assert torch.equal(first, _epoch(dataset, 0))
    assert torch.equal(first, _epoch(dataset, 2))
    dataset.set_epoch(1)
    assert not torch.equal(first, _epoch(dataset, 0))
    other_seed = _dataset(tmp_path, rng, crop=16, augment=True, seed=4)
    assert not torch.equal(first, _epoch(other_seed, 0))


def test_crop_and_flip_are_shared_by_the_images_of_a_sample(tmp_path, rng):
    dataset = _dataset(tmp_path, rng, crop=16, augment=True, seed=0)
    for i in range(len(dataset)):
        sample = dataset[i]
        assert torch.equal(sample["blur"], sample["sharp"])


def test_whole_images_without_crop(tmp_path, rng):
    sample = _dataset(tmp_path, rng, crop=None)[0]
    assert sample["blur"].shape == (3, 40, 48) and sample["name"] == "0"


def test_dihedral_group_has_eight_distinct_elements():
    image = np.arange(9).reshape(3, 3)
    variants = {dihedral(image, k).tobytes() for k in range(8)}
    assert len(variants) == 8
