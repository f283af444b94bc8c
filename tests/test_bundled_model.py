"""The model that ships with jdrl (jdrl.models): it loads strictly, gives the stored output, deblurs, is the default."""

import json

import numpy as np
import pytest
import torch

from jdrl.cli import main
from jdrl.models import DEFAULT_MODEL, MODELS, model_files, model_id

#: the bundled model's output on ``torch.rand(1, 3, 32, 32)`` of seed 0, measured once when it shipped
STORED_MEAN, STORED_STD = 0.4995059072971344, 0.295809268951416
STORED_PIXEL = (0.7628308534622192, 0.9141260385513306, 0.8299997448921204)  # output[0, :, 5, 7]


@pytest.fixture(scope="module")
def bundled():
    from jdrl.nets import create_net

    return create_net(checkpoint=model_id()).eval()


def psnr(a: np.ndarray, b: np.ndarray, border: int = 8) -> float:
    inner = (slice(border, -border), slice(border, -border))
    return float(10 * np.log10(1 / np.mean((a[inner] - b[inner]) ** 2)))


def held_out_crop(name: str = "chelsea", side: int = 128) -> np.ndarray:
    """A photo the model never trained on (one of the demo's held-out photos), centre crop."""
    from jdrl.data.synthetic import default_sources

    image = default_sources([name])[0][1]
    top, left = (image.shape[0] - side) // 2, (image.shape[1] - side) // 2
    return image[top:top + side, left:left + side].astype(np.float32)


def defocus(image: np.ndarray, radius: float) -> np.ndarray:
    from jdrl.data.synthetic import variable_disk_blur

    return variable_disk_blur(image, np.full(image.shape[:2], radius, np.float32)).clip(0, 1).astype(np.float32)


def test_the_bundled_files_hold_exactly_the_networks_weights(bundled):
    from safetensors import safe_open

    with model_files(model_id()) as (config_path, weights_path):
        config = json.loads(config_path.read_text())
        with safe_open(str(weights_path), framework="pt") as handle:
            stored = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 - not a dict
    state = bundled.state_dict()
    assert set(stored) == set(state)  # strict: no key missing, none unexpected
    assert all(torch.equal(stored[key].to(state[key].dtype), state[key]) for key in state)
    assert config["net"]["name"] == MODELS[DEFAULT_MODEL].net == bundled.jdrl_spec.name
    assert bundled.jdrl_spec.path == model_id() and sum(p.numel() for p in bundled.parameters()) == 1_137_203


def test_the_bundled_model_gives_its_stored_output_on_a_fixed_input(bundled):
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = bundled(x)
    assert y.shape == x.shape
    assert y.mean().item() == pytest.approx(STORED_MEAN, abs=1e-4)
    assert y.std().item() == pytest.approx(STORED_STD, abs=1e-4)
    assert y[0, :, 5, 7].tolist() == pytest.approx(STORED_PIXEL, abs=1e-4)


@pytest.mark.parametrize("radius", [3.0, 5.0])
def test_the_bundled_model_deblurs_a_photo_it_never_saw(bundled, radius):
    sharp = held_out_crop()
    blurry = defocus(sharp, radius)
    with torch.no_grad():
        out = bundled(torch.from_numpy(blurry).permute(2, 0, 1)[None]).clamp(0, 1)[0].permute(1, 2, 0).numpy()
    # measured when it shipped: 28.38 -> 31.10 dB at radius 3, 26.71 -> 29.29 dB at radius 5
    assert psnr(out, sharp) > psnr(blurry, sharp) + 2.0


def test_deblur_without_a_checkpoint_uses_the_bundled_model_and_says_so(tmp_path, capsys):
    from jdrl.images import read_image, write_image

    sharp = held_out_crop("astronaut")
    write_image(tmp_path / "photo.png", defocus(sharp, 3.0))
    assert main(["deblur", str(tmp_path / "photo.png"), "-o", str(tmp_path / "out"), "--quiet"]) == 0
    said = capsys.readouterr().out.splitlines()
    assert sum("bundled model jdrl:synth-nafnet16" in line for line in said) == 1
    out = read_image(tmp_path / "out" / "photo.png")
    assert psnr(out, sharp) > psnr(read_image(tmp_path / "photo.png"), sharp) + 2.0  # 23.4 -> 28.5 dB measured


def test_deblur_with_another_net_and_no_checkpoint_is_one_line(tmp_path, capsys):
    from jdrl.images import write_image

    write_image(tmp_path / "photo.png", np.full((32, 32, 3), 0.5, np.float32))
    assert main(["deblur", str(tmp_path / "photo.png"), "-o", str(tmp_path / "out"), "--net", "unet"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--checkpoint" in err[0] and not (tmp_path / "out").exists()


def test_an_unknown_bundled_name_is_one_line_naming_the_shipped_ones(tmp_path, capsys):
    from jdrl.images import write_image

    write_image(tmp_path / "photo.png", np.full((32, 32, 3), 0.5, np.float32))
    assert main(["deblur", str(tmp_path / "photo.png"), "-o", str(tmp_path / "out"), "--checkpoint", "jdrl:nope"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "jdrl:nope" in err[0] and model_id() in err[0]


def test_jdrl_nets_lists_the_bundled_model(capsys):
    assert main(["nets"]) == 0
    out = capsys.readouterr().out
    assert model_id() in out and "default of jdrl deblur" in out
