"""The fast paths of a training step give the numbers of their oracles: batched cycle flows, compiled
reblurring and network, bf16 reblurring networks, and the device's default flow estimator."""

from __future__ import annotations

import os

import pytest
import torch

from jdrl.errors import WeightsError
from jdrl.flow import resolve_flow
from jdrl.losses import JDRLConfig, JDRLLoss
from jdrl.reblur import ReblurModule
from jdrl.reblur.kernels import direct_reblur, reblur_function, split_seeds
from tests.conftest import textured_image

COMPILE = os.environ.get("JDRL_TEST_COMPILE") == "1"
COMPILE_REASON = "torch.compile on a CPU takes minutes per shape; run with JDRL_TEST_COMPILE=1 (run for issue 12)"


def pair(rng, size=48):
    sharp = torch.from_numpy(textured_image(rng, size, size)).permute(2, 0, 1)[None]
    blurry = torch.roll(sharp, shifts=(1, 2), dims=(2, 3)) * 0.9 + 0.05
    return blurry, sharp


def test_both_cycle_flows_in_one_batched_call_equal_two_calls(rng):
    calls = []

    class CountingFlow(torch.nn.Module):
        def forward(self, a, b):
            calls.append(a.shape[0])
            return torch.stack([(a - b).mean(1), (a + b).mean(1)], dim=1) * 3

    blurry, sharp = pair(rng)
    restored = (blurry * 0.8 + 0.1).requires_grad_(True)
    loss = JDRLLoss(JDRLConfig(reblur="none"), flow=CountingFlow())
    total, parts = loss(restored, blurry, sharp)
    assert calls == [2]  # one call, both directions stacked
    flow = CountingFlow()
    separate = JDRLLoss(JDRLConfig(reblur="none"), flow=lambda a, b: flow(a, b))
    reference, reference_parts = separate(restored, blurry, sharp)
    assert torch.allclose(total, reference, rtol=0, atol=1e-7)
    assert all(torch.allclose(parts[k], reference_parts[k], atol=1e-7) for k in ("deblur_fwd", "deblur_bwd"))


def test_dis_flow_batched_equals_per_pair(rng):
    from jdrl.flow import build_flow

    dis = build_flow("dis")
    a, b = pair(rng)
    c, d = pair(rng)
    both = dis(torch.cat([a, c]), torch.cat([b, d]))
    assert torch.equal(both[:1], dis(a, b)) and torch.equal(both[1:], dis(c, d))


def test_auto_flow_is_dis_on_the_cpu_and_falls_back_with_a_note(monkeypatch):
    estimator, note = resolve_flow("auto", None, "cpu")
    assert type(estimator).__name__ == "DISFlow" and note is None
    import jdrl.flow as flow_module

    built = []

    def fake_build(name, weights=None, device=None, **options):
        built.append(name)
        if name == "raft_small":
            raise WeightsError("torchvision's pretrained file is not in its cache (/x/raft_small.pth)")
        return "dis-estimator"

    monkeypatch.setattr(flow_module, "build_flow", fake_build)
    estimator, note = resolve_flow("auto", None, torch.device("cuda"))
    assert built == ["raft_small", "dis"] and estimator == "dis-estimator"
    assert "raft_small" in note and "/x/raft_small.pth" in note and "DIS" in note


def test_reblur_amp_is_off_on_the_cpu_and_changes_nothing(rng):
    torch.manual_seed(0)
    plain = ReblurModule(features=8)
    amp = ReblurModule(features=8, amp=True)
    amp.load_state_dict(plain.state_dict())
    blurry, sharp = pair(rng)
    assert torch.equal(plain(sharp, blurry), amp(sharp, blurry))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="bf16 reblurring networks run on CUDA only")
def test_reblur_amp_on_cuda_stays_within_its_tolerance(rng):
    torch.manual_seed(0)
    plain = ReblurModule(features=16).cuda()
    amp = ReblurModule(features=16, amp=True).cuda()
    amp.load_state_dict(plain.state_dict())
    blurry, sharp = (t.cuda() for t in pair(rng, 64))
    assert (plain(sharp, blurry) - amp(sharp, blurry)).abs().max().item() <= 2e-2  # bf16: ~3 significant digits


@pytest.mark.skipif(not COMPILE, reason=COMPILE_REASON)
def test_compiled_reblurring_equals_the_direct_oracle(rng):
    torch.manual_seed(0)
    image = torch.rand(1, 3, 40, 48, requires_grad=True)
    seeds = split_seeds(torch.randn(1, 35, 40, 48))
    weights = torch.softmax(torch.randn(1, 8, 40, 48), dim=1)
    compiled = reblur_function("compiled")(image, seeds, weights, "square")
    (grad,) = torch.autograd.grad(compiled.square().sum(), image)
    oracle_image = image.detach().clone().requires_grad_(True)
    oracle = direct_reblur(oracle_image, seeds, weights, "square")
    (oracle_grad,) = torch.autograd.grad(oracle.square().sum(), oracle_image)
    assert (compiled - oracle).abs().max().item() <= 1e-5
    assert (grad - oracle_grad).abs().max().item() <= 1e-4


COMPILE_RUN = ["net.options={width: 0.0625, dropout: 0.0}", "schedule.unit=step", "schedule.total=2", "data.crop=32",
               "data.batch_size=2", "data.synthetic={train: 4, val: 0, size: 48}", "run.deterministic=true"]


@pytest.mark.parametrize("wanted", [True, False])
def test_run_compile_is_what_runs_the_network(tmp_path, monkeypatch, wanted):
    """run.compile reaches the training step: the network passes through torch.compile, and what torch.compile
    returned is what runs every step (a stand-in compiler here: the real one takes minutes on a CPU)."""
    import torch

    from jdrl.training import train

    compiled, calls = [], []

    def fake_compile(function, *args, **kwargs):
        compiled.append(function)

        def run(*inputs):
            calls.append(inputs[0].shape)
            return function(*inputs)

        return run

    monkeypatch.setattr(torch, "compile", fake_compile)
    train("pixel", [*COMPILE_RUN, f"run.compile={str(wanted).lower()}"], run_dir=tmp_path, quiet=True)
    if wanted:
        assert len(compiled) == 1 and isinstance(compiled[0], torch.nn.Module)
        assert len(calls) == 2  # one compiled forward per training step
    else:
        assert compiled == [] and calls == []


@pytest.mark.skipif(not COMPILE, reason=COMPILE_REASON)
def test_run_compile_trains_the_same_network(tmp_path):
    from jdrl.checkpoint import read_checkpoint
    from jdrl.training import train

    common = COMPILE_RUN
    plain = train("pixel", common, run_dir=tmp_path / "plain", quiet=True)
    compiled = train("pixel", [*common, "run.compile=true"], run_dir=tmp_path / "compiled", quiet=True)
    a = read_checkpoint(plain / "last.pt")["net"]["state_dict"]
    b = read_checkpoint(compiled / "last.pt")["net"]["state_dict"]
    assert a.keys() == b.keys() and max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-4
