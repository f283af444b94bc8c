"""The evaluation protocol as a value (jdrl.evaluation.Protocol): the paper's values, the same numbers as
`jdrl eval --protocol paper`, every field checked; the display-only arguments (jdrl.evaluation.Display)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from jdrl.checkpoint import make_checkpoint, write_checkpoint
from jdrl.cli import main
from jdrl.data.datasets import PairedImageDataset
from jdrl.data.pairs import load_pairs
from jdrl.errors import ConfigError, JDRLError, UsageError
from jdrl.evaluation import Display, Protocol, evaluate
from jdrl.evaluation.report import read_metrics_csv
from jdrl.images import write_image
from jdrl.nets import create_net
from tests.conftest import textured_image


def test_paper_protocol_is_the_released_pipeline():
    """SPEC 2.6 and 7: PWC-Net flow, the released flow_resample warp, the released crops (the input alone:
    the UNet pipeline's top-left x16), 8-bit reading; LPIPS measured; the flow errors over the whole image."""
    paper = Protocol.paper()
    assert (paper.name, paper.flow, paper.flow_weights) == ("paper", "pwcnet", None)
    assert (paper.warp, paper.border, paper.baseline_border) == ("released", "released", "released-unet")
    assert paper.eight_bit is True and paper.reading == "8-bit (as released)"
    assert paper.lpips is True and paper.flow_border == 0
    assert Protocol.paper(flow_weights=Path("pwc.pth")).flow_weights == "pwc.pth"  # a path, kept as text
    assert Protocol.named("paper") == paper


def test_jdrl_protocol_is_the_default():
    jdrl = Protocol.jdrl()
    assert jdrl == Protocol() == Protocol.named("jdrl")
    assert (jdrl.flow, jdrl.warp, jdrl.border, jdrl.baseline_border) == ("dis", "exact", "reflect", None)
    assert jdrl.eight_bit is False and jdrl.reading == "full bit depth" and jdrl.lpips is True


def test_the_border_is_resolved_for_the_network_scored():
    paper = Protocol.paper()
    unet, mprnet = create_net("unet", width=0.0625), create_net("mprnet", width=0.05)
    assert paper.border_for(unet) == "released-unet" and paper.border_for(mprnet) == "released-mprnet"
    assert paper.border_for(None) == "released-unet"  # the input alone: the UNet pipeline's crop
    assert paper.for_net(mprnet).border_for(None) == "released-mprnet"  # the input beside it, cropped alike
    with pytest.raises(ConfigError, match="released-unet or released-mprnet"):
        paper.replace(baseline_border=None).border_for(None)
    assert Protocol().border_for(None) == "reflect"


@pytest.mark.parametrize(("field", "value", "words"), [
    ("name", "", "name must be"),
    ("name", "x" * 65, "name must be"),
    ("flow", "nope", "flow must be one of dis"),
    ("flow", 3, "flow must be a flow estimator"),
    ("flow_weights", "", "flow_weights must be a file path"),
    ("warp", "bent", "warp must be one of exact, released"),
    ("border", "wrap", "border must be one of reflect, released"),
    ("baseline_border", "reflect", "baseline_border must be one of released-unet, released-mprnet"),
    ("eight_bit", 1, "eight_bit must be true or false"),
    ("lpips", "auto", "lpips must be true or false"),
    ("flow_border", -1, "flow_border must be >= 0 and <= 65536"),
    ("flow_border", 70_000, "flow_border must be >= 0 and <= 65536"),
    ("flow_border", 1.5, "flow_border must be a whole number"),
    ("flow_border", True, "flow_border must be a whole number"),
])
def test_every_field_is_checked(field, value, words):
    with pytest.raises(ConfigError, match=words) as caught:
        Protocol(**{field: value})
    assert isinstance(caught.value, JDRLError) and "\n" not in str(caught.value)  # one line, as the CLI shows it
    with pytest.raises(ConfigError, match=words):
        Protocol.paper().replace(**{field: value})


def test_every_bad_field_is_named_at_once_and_a_protocol_is_frozen():
    with pytest.raises(ConfigError) as caught:
        Protocol(warp="bent", border="wrap", flow_border=-1)
    assert all(name in str(caught.value) for name in ("warp", "border", "flow_border"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        Protocol().warp = "released"  # type: ignore[misc]
    with pytest.raises(ConfigError, match="protocol must be one of jdrl, paper"):
        Protocol.named("mine")
    with pytest.raises(UsageError, match="Protocol"):
        evaluate([], None, protocol="paper")  # type: ignore[arg-type]


def test_display_fields_are_checked_and_go_one_way_only(rng):
    for bad in ({"thumbnail_size": 0}, {"panel_size": -4}, {"mask_mode": "odd"}, {"keep_images": "yes"},
                {"on_image": 3}):
        with pytest.raises(ConfigError, match="invalid display"):
            Display(**bad)
    image = torch.from_numpy(textured_image(rng, 32, 32)).permute(2, 0, 1)
    pairs = [{"blur": image, "sharp": image, "name": "a"}]
    with pytest.raises(UsageError, match="not both"):
        evaluate(pairs, None, display=Display(keep_images=True), thumbnail_size=40)
    shown = evaluate(pairs, None, display=Display(keep_images=True, thumbnail_size=16))
    plain = evaluate(pairs, None)
    assert shown.rows == plain.rows and plain.images is None  # a display changes no score
    assert set(shown.images["a"]) >= {"input", "output", "GT", "deformed GT"}
    assert all(max(p.shape[-2:]) <= 16 for p in shown.images["a"].values())


# ----------------------------------------------------------------------------- the same numbers as jdrl eval


def sixteen_bit_pairs(folder: Path) -> Path:
    """Two 16-bit pairs of a size no released crop leaves whole (40x56: UNet keeps 32x48)."""
    for index, name in enumerate(("a", "b")):
        rng = np.random.default_rng(10 + index)
        sharp = textured_image(rng, 40, 56)
        blur = np.clip(np.roll(sharp, 1, axis=1) * 0.97 + 0.01, 0, 1)  # shifted a pixel: the deformed GT matters
        write_image(folder / "blur" / f"{name}.png", blur, bit_depth=16)
        write_image(folder / "gt" / f"{name}.png", sharp, bit_depth=16)
    return folder


def test_evaluate_with_the_paper_protocol_gives_the_cli_numbers(tmp_path):
    data = sixteen_bit_pairs(tmp_path / "pairs")
    checkpoint = tmp_path / "run" / "last.pt"
    torch.manual_seed(0)
    write_checkpoint(make_checkpoint("unet", {"width": 0.0625}, create_net("unet", width=0.0625).state_dict()),
                     checkpoint)
    out = tmp_path / "eval"
    # PWC-Net's weights are not to be had offline: the paper protocol with DIS, as `--flow dis` gives it
    assert main(["eval", str(data), "--checkpoint", str(checkpoint), "--baseline", "input", "--protocol", "paper",
                 "--flow", "dis", "--no-lpips", "--device", "cpu", "--out", str(out), "--quiet"]) == 0
    cli_rows = read_metrics_csv(out / "metrics.csv")
    cli_options = [r["options"] for r in json.loads((out / "summary.json").read_text())["results"]]

    protocol = Protocol.paper().replace(flow="dis", lpips=False)
    dataset = PairedImageDataset(load_pairs(data).pairs, crop=None)
    net = create_net(checkpoint=checkpoint)
    results = [evaluate(dataset, net, protocol=protocol), evaluate(dataset, None, protocol=protocol)]
    library_rows = [row for result in results for row in result.rows]
    assert [r["name"] for r in cli_rows] == [r["name"] for r in library_rows] == ["a", "b", "a", "b"]
    for cli, library in zip(cli_rows, library_rows):
        assert {k: v for k, v in cli.items() if k not in ("name", "result") and v is not None} == \
            {k: v for k, v in library.items() if k != "name"}
    for result, options in zip(results, cli_options):
        assert result.options["border"] == options["border"] == "released-unet"
        assert result.options["warp"] == options["warp"] == "released"
        assert result.options["reading"] == options["reading"] == "8-bit (as released)"
        assert result.options["protocol"] == options["protocol"] == "paper"

    # the protocol is what made them: the jdrl protocol scores the same pairs otherwise
    jdrl = evaluate(dataset, None, protocol=Protocol.jdrl().replace(lpips=False))
    assert jdrl.options["border"] == "reflect" and jdrl.means["psnr_deformed"] != results[1].means["psnr_deformed"]


def test_keywords_override_the_protocol_and_no_protocol_scores_as_before(rng):
    image = torch.round(torch.from_numpy(textured_image(rng, 40, 56)).permute(2, 0, 1) * 255) / 255
    shifted = torch.roll(image, 1, dims=-1)  # 8-bit values: the released reading leaves them as they are
    pairs = [{"blur": shifted, "sharp": image, "name": "a"}]
    before = evaluate(pairs, None, flow="dis", border="reflect", warp="exact", flow_border=0)
    plain = evaluate(pairs, None)
    assert plain.rows == before.rows and plain.options == before.options and "protocol" not in plain.options
    assert plain.options["lpips"] == "LPIPS not requested"  # no protocol: LPIPS only when asked for
    overridden = evaluate(pairs, None, protocol=Protocol.paper().replace(lpips=False), flow="dis",
                          warp="exact", border="reflect")
    assert overridden.rows == plain.rows and overridden.options["reading"] == "8-bit (as released)"
    assert overridden.options["border"] == "reflect" and overridden.options["warp"] == "exact"
    with pytest.raises(ConfigError, match="released-unet or released-mprnet"):  # explicit: name the crop
        evaluate(pairs, None, protocol=Protocol.paper().replace(flow="dis", lpips=False), border="released")
