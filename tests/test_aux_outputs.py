"""Multi-output networks: auxiliary outputs for training (jdrl.nets.training_outputs) and the loss terms that see
them (``needs_outputs``, the built-in ``stage_deblur``). Tiny networks, 32 px images, 2 training steps."""

from __future__ import annotations

import csv
import math

import pytest
import torch

from jdrl.errors import ConfigError
from jdrl.losses import LOSS_TERMS, JDRLConfig, JDRLLoss, charbonnier
from jdrl.nets import create_net, has_training_outputs, training_outputs
from jdrl.training import train
from jdrl.training.trainer import Objective

TINY_MPRNET = {"width": 0.05, "num_cab": 1}
TINY_IFAN = {"ch": 4, "N": 2, "res_num": 1}


class ZeroFlow:
    """A frozen 'flow estimator' that finds no motion, counting its calls (fast and exact)."""

    def __init__(self):
        self.calls = 0

    def __call__(self, a, b):
        self.calls += 1
        return a.new_zeros(a.shape[0], 2, *a.shape[-2:])


def _images(batch=2, size=32):
    generator = torch.Generator().manual_seed(0)
    return torch.rand(batch, 3, size, size, generator=generator), torch.rand(batch, 3, size, size, generator=generator)


def test_mprnet_offers_its_earlier_stages_as_auxiliary_images():
    net = create_net("mprnet", **TINY_MPRNET)
    x, _ = _images()
    with torch.no_grad():
        restored, outputs = training_outputs(net, x)
        assert torch.equal(restored, net(x))  # the restored image is always what forward returns
    assert list(outputs) == ["stage2", "stage1"]
    assert all(value.shape == x.shape for value in outputs.values())


def test_ifan_offers_its_filters_and_disparity_map_which_are_no_images():
    net = create_net("ifan", **TINY_IFAN)
    x, _ = _images()
    with torch.no_grad():
        restored, outputs = training_outputs(net, x)
        assert torch.equal(restored, net(x))
    assert outputs["Filter"].shape == (2, net.kernel_dim, 4, 4)
    assert outputs["DM"].shape == (2, 1, 4, 4)
    objective = Objective(net, JDRLLoss(JDRLConfig(objective="pixel", terms={"stage_deblur": 1.0})), net_name="ifan")
    with pytest.raises(ConfigError, match=r"network 'ifan'.*stage_deblur.*Filter \(2, \d+, 4, 4\), DM \(2, 1, 4, 4\)"):
        objective(x, x, "full", False, None)


def test_a_network_without_training_outputs_is_named():
    net = create_net("unet", width=0.0625, dropout=0.0)
    assert not has_training_outputs(net)
    with pytest.raises(ConfigError, match="'unet' has no auxiliary outputs"):
        training_outputs(net, torch.rand(1, 3, 32, 32))


def test_a_term_that_needs_outputs_sees_them_and_three_argument_terms_do_not_change():
    seen = {}

    class Recorder:
        needs_outputs = True

        def __init__(self, **options):
            pass

        def __call__(self, restored, blurry, sharp, *, outputs, stage, objective):
            seen.update(outputs=dict(outputs), stage=stage, objective=objective)
            return outputs["stage1"].mean()

    LOSS_TERMS.register("aux_recorder_test")(Recorder)
    loss = JDRLLoss(JDRLConfig(objective="pixel", terms={"aux_recorder_test": 2.0, "stage_deblur": 0.5}))
    assert loss.output_terms == ("aux_recorder_test", "stage_deblur")
    x, sharp = _images()
    outputs = {"stage2": x * 0.5, "stage1": x * 0.25}
    total, parts = loss(x, x, sharp, stage="full", outputs=outputs)
    assert set(seen["outputs"]) == {"stage2", "stage1"} and seen["stage"] == "full" and seen["objective"] is loss
    assert parts["aux_recorder_test"].item() == pytest.approx((x * 0.25).mean().item())
    assert total.item() == pytest.approx(parts["deblur"].item() + 2 * parts["aux_recorder_test"].item()
                                         + 0.5 * parts["stage_deblur"].item(), rel=1e-6)
    with pytest.raises(ConfigError, match="needs the network's auxiliary outputs"):
        loss(x, x, sharp)
    plain = JDRLLoss(JDRLConfig(objective="pixel", terms={}))
    assert not plain.needs_outputs
    assert plain(x, x, sharp)[0].item() == pytest.approx(charbonnier(x, sharp).item())


def test_stage_deblur_is_the_objectives_own_deblurring_term_on_each_auxiliary_image():
    x, sharp = _images()
    outputs = {"stage2": (x + sharp) / 2, "stage1": x * 0.9}
    pixel = JDRLLoss(JDRLConfig(objective="pixel", terms={"stage_deblur": 1.0}))
    _, parts = pixel(x, x, sharp, outputs=outputs)
    expected = charbonnier(outputs["stage2"], sharp) + charbonnier(outputs["stage1"], sharp)
    assert parts["stage_deblur"].item() == pytest.approx(expected.item(), rel=1e-6)

    flow = ZeroFlow()  # jdrl mode: each image gets its own flow (one cycle call each) and mask
    jdrl = JDRLLoss(JDRLConfig(reblur="none", terms={"stage_deblur": {"weight": 0.5, "outputs": ["stage1"]}}), flow=flow)
    _, parts = jdrl(x, x, sharp, stage="full", outputs=outputs)
    assert flow.calls == 2
    assert parts["deblur"].item() == pytest.approx(jdrl.deblur_loss(x, x, sharp).item(), rel=1e-6)
    assert parts["stage_deblur"].item() == pytest.approx(jdrl.deblur_loss(outputs["stage1"], x, sharp).item(), rel=1e-6)
    flow.calls = 0  # warm-up: one target (the GT warped onto the input) shared by every image
    _, parts = jdrl(x, x, sharp, stage="warmup", outputs=outputs)
    assert flow.calls == 1
    assert parts["stage_deblur"].item() == pytest.approx(charbonnier(outputs["stage1"], sharp).item(), rel=1e-5)
    with pytest.raises(ConfigError, match="no auxiliary output"):
        JDRLLoss(JDRLConfig(objective="pixel", terms={"stage_deblur": {"outputs": ["stage9"]}}))(
            x, x, sharp, outputs=outputs)


def test_the_stage_term_adds_its_own_gradient_to_the_stage_1_parameters():
    # Stage 1 also feeds stage 3 (SAM gate, CSFF), so its parameters have a gradient without the term; the term
    # adds exactly weight * its own gradient, which reaches them directly through the stage-1 image.
    net = create_net("mprnet", **TINY_MPRNET)
    weight = net.sam12.conv2.weight  # the conv that makes the stage-1 image
    x, sharp = _images(batch=1)
    restored, outputs = training_outputs(net, x)
    on, _ = JDRLLoss(JDRLConfig(objective="pixel", terms={"stage_deblur": 0.5}))(restored, x, sharp, outputs=outputs)
    off, _ = JDRLLoss(JDRLConfig(objective="pixel"))(restored, x, sharp)
    term = charbonnier(outputs["stage2"], sharp) + charbonnier(outputs["stage1"], sharp)
    grad_on, grad_off, grad_term = (torch.autograd.grad(value, weight, retain_graph=True)[0] for value in (on, off, term))
    assert grad_term.abs().sum() > 0
    assert torch.allclose(grad_on - grad_off, 0.5 * grad_term, atol=1e-7, rtol=1e-4)


def test_a_network_without_the_term_never_calls_training_outputs():
    net = create_net("mprnet", **TINY_MPRNET)

    def refuse(x):
        raise AssertionError("training_outputs called without a term that needs it")

    net.training_outputs = refuse
    objective = Objective(net, JDRLLoss(JDRLConfig(objective="pixel")), net_name="mprnet")
    x, sharp = _images()
    total, parts = objective(x, sharp, "full", False, None)
    assert math.isfinite(total.item()) and "stage_deblur" not in parts


TRAIN = ["schedule.unit=step", "schedule.total=2", "schedule.log_every=1", "data.crop=32", "data.batch_size=1",
         "data.synthetic={train: 2, val: 0, size: 32}"]


def test_training_a_tiny_mprnet_with_stage_deblur_logs_the_term(tmp_path):
    run = tmp_path / "run"
    train("pixel", ["net.name=mprnet", "net.options={width: 0.05, num_cab: 1}", "loss.terms={stage_deblur: 0.5}", *TRAIN],
          run_dir=run, quiet=True)
    with open(run / "log.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2
    assert all(math.isfinite(float(row["stage_deblur"])) and float(row["stage_deblur"]) > 0 for row in rows)


def test_stage_deblur_with_a_network_without_auxiliary_outputs_is_refused_naming_it(tmp_path):
    with pytest.raises(ConfigError, match=r"\['stage_deblur'\].*network 'unet' has none"):
        train("pixel", ["net.options={width: 0.0625, dropout: 0.0}", "loss.terms={stage_deblur: 0.5}", *TRAIN],
              run_dir=tmp_path / "run", quiet=True)
