"""Crop position sampling: uniform, or the released dataset's ``int(randint(0, side - size) / 2)`` (docs/REPRODUCE.md)."""

import numpy as np
import pytest

from jdrl.data.augment import CROP_SAMPLINGS, crop_and_augment, random_crop_box


def draws(sampling, n=4000, height=512, width=512, size=256, seed=0):
    rng = np.random.default_rng(seed)
    return np.array([random_crop_box(rng, height, width, size, sampling) for _ in range(n)])


def test_names():
    assert CROP_SAMPLINGS == ("uniform", "released")


def test_released_stays_in_the_top_left_383_square_and_covers_0_to_127():
    boxes = draws("released")
    assert boxes.min() == 0 and boxes.max() == 127
    assert set(boxes[:, 0]) == set(range(128)) and set(boxes[:, 1]) == set(range(128))
    assert (boxes + 256).max() <= 383  # the crop's far edge (exclusive) never passes row/column 383


def test_released_matches_the_released_expression():
    # dataset.py:Crop_img: int(np.random.randint(0, crop_w) / 2), rows first, then columns
    rng_ours, rng_ref = np.random.default_rng(7), np.random.default_rng(7)
    for height, width in [(512, 512), (300, 400), (257, 512)]:
        for _ in range(200):
            expected = (int(rng_ref.integers(0, height - 256) / 2), int(rng_ref.integers(0, width - 256) / 2))
            assert random_crop_box(rng_ours, height, width, 256, "released") == expected


def test_released_at_exact_size_is_zero_and_draws_nothing():
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    assert random_crop_box(rng, 256, 256, 256, "released") == (0, 0)
    assert rng.bit_generator.state == state


def test_uniform_covers_the_whole_range():
    boxes = draws("uniform", n=20000)
    assert boxes.min() == 0 and boxes.max() == 256
    assert len(set(boxes[:, 0])) == 257 and len(set(boxes[:, 1])) == 257


@pytest.mark.parametrize("sampling", CROP_SAMPLINGS)
def test_seeded_determinism(sampling):
    np.testing.assert_array_equal(draws(sampling, n=50, seed=3), draws(sampling, n=50, seed=3))
    assert not np.array_equal(draws(sampling, n=50, seed=3), draws(sampling, n=50, seed=4))


def test_crop_and_augment_passes_sampling_through():
    image = np.arange(512 * 512, dtype=np.float32).reshape(512, 512)
    for seed in range(50):
        out = crop_and_augment({"a": image, "b": image + 1}, np.random.default_rng(seed), 256, False, sampling="released")
        top, left = divmod(int(out["a"][0, 0]), 512)
        assert top <= 127 and left <= 127 and out["a"].shape == (256, 256)
        np.testing.assert_array_equal(out["b"], out["a"] + 1)
    # default stays uniform and is unchanged for the same seed
    default = crop_and_augment({"a": image}, np.random.default_rng(9), 256, True)
    uniform = crop_and_augment({"a": image}, np.random.default_rng(9), 256, True, sampling="uniform")
    np.testing.assert_array_equal(default["a"], uniform["a"])


def test_bad_sampling_name():
    with pytest.raises(ValueError, match="uniform.*released"):
        random_crop_box(np.random.default_rng(0), 512, 512, 256, "center")
    with pytest.raises(ValueError, match="uniform.*released"):
        crop_and_augment({"a": np.zeros((8, 8))}, np.random.default_rng(0), 4, False, sampling="center")
