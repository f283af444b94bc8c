import dataclasses

import pytest
import torch
from torch import nn

from jdrl.losses import JDRLConfig, JDRLLoss, charbonnier
from tests.test_flow_warp_mask import shifted_pair


@pytest.fixture
def batch(rng):
    """A blurry input, a sharp GT shifted by (3, -2) px with one patch scrambled, and a 'restored' image."""
    blurry, sharp = shifted_pair(rng, 3, -2, height=64, width=72)
    restored = (0.7 * blurry + 0.3 * torch.rand_like(blurry)).clamp(0, 1)
    sharp = sharp.clone()
    sharp[..., 16:48, 20:56] = sharp[..., 16:48, 20:56].flip(-1, -2)  # content no global flow explains
    return restored, blurry, sharp


def loss_of(config: JDRLConfig, batch, stage="full"):
    torch.manual_seed(0)
    return JDRLLoss(config)(*batch, stage=stage)


def test_charbonnier_matches_its_formula():
    x, y = torch.zeros(4), torch.tensor([0.0, 1.0, -2.0, 3.0])
    assert charbonnier(x, y, 1e-3).item() == pytest.approx(torch.sqrt(y**2 + 1e-6).mean().item())


def test_full_objective_has_every_part(batch):
    total, parts = loss_of(JDRLConfig(reblur_features=8), batch)
    assert set(parts) == {"total", "deblur", "deblur_fwd", "deblur_bwd", "mask_fwd", "mask_bwd", "reblur"}
    assert total.item() == pytest.approx(parts["deblur"].item() + 0.5 * parts["reblur"].item(), rel=1e-6)
    assert parts["deblur"].item() == pytest.approx(parts["deblur_fwd"].item() + parts["deblur_bwd"].item(), rel=1e-6)


def test_warmup_is_plain_charbonnier_to_the_gt_warped_onto_the_input(batch):
    restored, blurry, sharp = batch
    loss = JDRLLoss(JDRLConfig(reblur_features=8))
    total, parts = loss(restored, blurry, sharp, stage="warmup")
    assert set(parts) == {"total", "deblur"}
    from jdrl.flow.warp import warp

    target = warp(sharp, loss.flow(blurry, sharp))
    assert total.item() == pytest.approx(charbonnier(restored, target).item(), rel=1e-6)
    # the flow aligned the GT: the warped target is much closer to the input than the raw GT
    assert charbonnier(blurry, target) < 0.5 * charbonnier(blurry, sharp)


ABLATIONS = {
    "pixel (#1)": dict(objective="pixel"),
    "no deformation (#2)": dict(deform="none"),
    "no mask (#3)": dict(mask="none"),
    "no reblur (#4)": dict(reblur="none"),
    "free kernels (#5)": dict(reblur="free"),
    "single kernel (#6)": dict(reblur="single"),
    "one-way deformation": dict(deform="forward"),
}


@pytest.mark.parametrize("name", ABLATIONS)
def test_each_ablation_switch_changes_what_it_should_and_nothing_else(name, batch):
    full_config = JDRLConfig(reblur_features=8, mask="paper")
    config = dataclasses.replace(full_config, **ABLATIONS[name])
    _, full = loss_of(full_config, batch)
    module = JDRLLoss(config)
    _, parts = loss_of(config, batch)
    restored, blurry, sharp = batch
    if name.startswith("pixel"):
        assert module.flow is None and module.reblur is None and set(parts) == {"total", "deblur"}
        assert parts["total"].item() == pytest.approx(charbonnier(restored, sharp).item(), rel=1e-6)
    elif name.startswith("no deformation"):
        assert module.flow is None and module.reblur is not None
        assert parts["deblur"].item() == pytest.approx(charbonnier(restored, sharp).item(), rel=1e-6)
        assert parts["reblur"] == full["reblur"]
    elif name.startswith("no mask"):
        assert parts["mask_fwd"] == 1 and parts["mask_bwd"] == 1 and full["mask_fwd"] < 1
        assert parts["deblur"] != full["deblur"] and parts["reblur"] == full["reblur"]
    elif name.startswith("one-way"):
        assert "deblur_bwd" not in parts and parts["deblur_fwd"] == full["deblur_fwd"]
    else:  # reblurring variants: the deblurring term is untouched
        assert parts["deblur"] == full["deblur"]
        if name.startswith("no reblur"):
            assert module.reblur is None and "reblur" not in parts
        else:
            assert module.reblur.kernel == ABLATIONS[name]["reblur"] and parts["reblur"] != full["reblur"]


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1))

    def forward(self, x):
        return torch.sigmoid(self.body(x) + torch.logit(x.clamp(1e-3, 1 - 1e-3)))


@pytest.mark.parametrize("stage", ["warmup", "full"])
def test_gradients_reach_the_network_and_the_reblur_module(stage, batch):
    _, blurry, sharp = batch
    net, loss_fn = TinyNet(), JDRLLoss(JDRLConfig(reblur_features=8))
    total, _ = loss_fn(net(blurry), blurry, sharp, stage=stage)
    total.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
    reblur_grads = [p.grad for p in loss_fn.reblur.parameters()]
    if stage == "full":
        assert all(g is not None and g.abs().sum() > 0 for g in reblur_grads)
    else:
        assert all(g is None for g in reblur_grads)


def test_loss_module_exposes_only_the_reblur_parameters():
    loss_fn = JDRLLoss(JDRLConfig(reblur_features=8))
    assert list(loss_fn.parameters()) == list(loss_fn.reblur.parameters())
    assert all(not k.startswith("_flow") for k in loss_fn.state_dict())


def test_a_few_steps_reduce_the_loss(batch):
    _, blurry, sharp = batch
    torch.manual_seed(0)
    net, loss_fn = TinyNet(), JDRLLoss(JDRLConfig(reblur_features=8))
    optimizer = torch.optim.Adam([*net.parameters(), *loss_fn.parameters()], lr=1e-3)
    losses = []
    for _ in range(12):
        total, _ = loss_fn(net(blurry), blurry, sharp)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        losses.append(total.item())
    assert losses[-1] < losses[0]
