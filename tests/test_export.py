"""ONNX export: dynamic sizes, the UNet's BGR weights, verification, ``jdrl export``."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from jdrl.checkpoint import write_checkpoint
from jdrl.nets.factory import network_checkpoint
from jdrl.cli import main
from jdrl.errors import ConfigError
from jdrl.export import ExportVerificationError, dynamo_unavailable, export_onnx, verify_onnx
from jdrl.nets import create_net

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

TINY = 0.0625


def tiny_unet(channel_order: str = "rgb"):
    torch.manual_seed(0)
    return create_net("unet", width=TINY, channel_order=channel_order).eval()


def run_onnx(path, blurry: torch.Tensor) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["restored"], {"blurry": blurry.numpy()})[0]


@pytest.mark.parametrize("channel_order", ["rgb", "bgr"])
def test_export_is_verified_at_another_size(tmp_path, channel_order):
    net = tiny_unet(channel_order)
    result = export_onnx(net, tmp_path / "net.onnx", height=64, width=48, exporter="torchscript")
    assert result.skipped is None and result.max_abs_diff <= 1e-4
    assert result.shape[-2:] != (64, 48) and result.shape[0] > 1  # another size and batch than traced


@pytest.mark.parametrize("channel_order", ["rgb", "bgr"])
def test_exported_model_matches_pytorch_on_dynamic_sizes(tmp_path, channel_order):
    net = tiny_unet(channel_order)
    path = tmp_path / "net.onnx"
    export_onnx(net, path, height=32, width=32, exporter="torchscript")
    blurry = torch.rand(3, 3, 80, 112)
    with torch.no_grad():
        expected = net(blurry).numpy()
    assert np.abs(run_onnx(path, blurry) - expected).max() <= 1e-4


def test_bgr_flips_are_inside_the_graph(tmp_path):
    rgb, bgr = tiny_unet("rgb"), tiny_unet("bgr")
    bgr.load_state_dict(rgb.state_dict())
    export_onnx(bgr, tmp_path / "bgr.onnx", height=32, width=32, exporter="torchscript")
    blurry = torch.rand(1, 3, 48, 64)
    with torch.no_grad():
        flipped = rgb(blurry.flip(1)).flip(1).numpy()
    assert np.abs(run_onnx(tmp_path / "bgr.onnx", blurry) - flipped).max() <= 1e-4


def test_graph_names_dynamic_axes_and_metadata(tmp_path):
    path = tmp_path / "net.onnx"
    export_onnx(tiny_unet(), path, height=32, width=32, metadata={"jdrl.net": "unet"}, exporter="torchscript")
    model = onnx.load(str(path))
    (graph_input,), (graph_output,) = model.graph.input, model.graph.output
    assert graph_input.name == "blurry" and graph_output.name == "restored"
    dims = [d.dim_param or d.dim_value for d in graph_input.type.tensor_type.shape.dim]
    assert dims[1] == 3 and all(isinstance(d, str) and d for d in (dims[0], dims[2], dims[3]))
    metadata = {p.key: p.value for p in model.metadata_props}
    assert metadata["jdrl.size_multiple"] == "16" and metadata["jdrl.net"] == "unet"


def test_export_keeps_the_training_mode(tmp_path):
    net = tiny_unet().train()
    export_onnx(net, tmp_path / "net.onnx", height=32, width=32, exporter="torchscript")
    assert net.training


def test_bad_export_size_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="multiples of 16"):
        export_onnx(tiny_unet(), tmp_path / "net.onnx", height=60, width=64, exporter="torchscript")


def test_failed_verification_leaves_no_file(tmp_path):
    path = tmp_path / "net.onnx"
    with pytest.raises(ExportVerificationError):
        export_onnx(tiny_unet(), path, height=32, width=32, tolerance=-1.0, exporter="torchscript")
    assert list(tmp_path.iterdir()) == []


def test_missing_onnxruntime_skips_verification(tmp_path, monkeypatch):
    net = tiny_unet()
    path = tmp_path / "net.onnx"
    export_onnx(net, path, height=32, width=32, verify=False, exporter="torchscript")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    result = verify_onnx(net, path, 48, 48)
    assert result.max_abs_diff is None and "pip install jdrl[onnx]" in str(result)


def test_missing_onnx_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install jdrl\[onnx\]"):
        export_onnx(tiny_unet(), tmp_path / "net.onnx", exporter="torchscript")


def save_checkpoint(path, channel_order: str = "bgr"):
    net = tiny_unet(channel_order)
    options = {"width": TINY, "channel_order": channel_order}
    return write_checkpoint(network_checkpoint(net, "unet", **options), path)


def test_cli_exports_and_reports_the_verification(tmp_path, capsys):
    checkpoint = save_checkpoint(tmp_path / "net.pt")
    out = tmp_path / "model.onnx"
    assert main(["export", "--exporter", "torchscript", str(checkpoint), "-o", str(out), "--height", "64", "--width", "32"]) == 0
    assert out.is_file()
    printed = capsys.readouterr().out
    assert "verified with onnxruntime" in printed and "max abs diff" in printed
    metadata = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert metadata["jdrl.net"] == "unet" and "bgr" in metadata["jdrl.options"]


def test_cli_bad_size_and_missing_checkpoint(tmp_path, capsys):
    checkpoint = save_checkpoint(tmp_path / "net.pt")
    assert main(["export", "--exporter", "torchscript", str(checkpoint), "-o", str(tmp_path / "m.onnx"), "--height", "50"]) == 2
    assert "multiples of 16" in capsys.readouterr().err
    assert main(["export", "--exporter", "torchscript", str(tmp_path / "none.pt"), "-o", str(tmp_path / "m.onnx")]) == 2
    assert not (tmp_path / "m.onnx").exists()


# ---------------------------------------------------------------- the two exporters (dynamo first, TorchScript fallback)


def exporter_of(path) -> str:
    return {entry.key: entry.value for entry in onnx.load(str(path)).metadata_props}["jdrl.exporter"]


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_each_exporter_is_verified_with_dynamic_sizes(tmp_path, exporter):
    if exporter == "dynamo" and (reason := dynamo_unavailable()):
        pytest.skip(reason)  # onnxscript missing, or torch < 2.5
    net, path = tiny_unet(), tmp_path / "net.onnx"
    result = export_onnx(net, path, height=32, width=32, exporter=exporter)
    assert result.exporter == exporter and result.fallback_reason is None
    assert exporter_of(path) == exporter and str(result).startswith(f"{exporter} exporter; verified")
    blurry = torch.rand(3, 3, 48, 80)  # batch, height and width unlike the traced 1x3x32x32
    with torch.no_grad():
        expected = net(blurry).numpy()
    assert np.abs(run_onnx(path, blurry) - expected).max() <= 1e-4


def test_auto_falls_back_to_torchscript_without_onnxscript(tmp_path, monkeypatch):
    monkeypatch.setattr("jdrl.export.dynamo_unavailable", lambda: "onnxscript is not installed")
    path = tmp_path / "net.onnx"
    result = export_onnx(tiny_unet(), path, height=32, width=32)
    assert result.exporter == "torchscript" and exporter_of(path) == "torchscript"
    assert "fallback: onnxscript is not installed" in str(result) and result.max_abs_diff <= 1e-4


def test_auto_falls_back_to_torchscript_when_dynamo_fails(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("unsupported operator")

    monkeypatch.setattr("jdrl.export.dynamo_unavailable", lambda: None)
    monkeypatch.setattr("jdrl.export._write_dynamo", broken)
    result = export_onnx(tiny_unet(), tmp_path / "net.onnx", height=32, width=32)
    assert result.exporter == "torchscript" and "dynamo export failed: RuntimeError: unsupported operator" in str(result)
    with pytest.raises(RuntimeError, match="unsupported operator"):  # asked for dynamo only: no silent fallback
        export_onnx(tiny_unet(), tmp_path / "other.onnx", height=32, width=32, exporter="dynamo")
    assert not (tmp_path / "other.onnx").exists()


def test_unknown_exporter_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="torchscript"):
        export_onnx(tiny_unet(), tmp_path / "net.onnx", height=32, width=32, exporter="tflite")
