import pytest
import torch

from jdrl.reblur import ReblurModule, isotropic_kernels, isotropic_reblur
from jdrl.reblur.kernels import direct_reblur, ring_reblur
from tests.conftest import shared_path


def _inputs(batch=2, height=19, width=23, dtype=torch.float32, requires_grad=False):
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(batch, 3, height, width, generator=generator, dtype=dtype)
    seeds = torch.randn(batch, 35, height, width, generator=generator, dtype=dtype) * 2
    weights = torch.softmax(torch.randn(batch, 8, height, width, generator=generator, dtype=dtype), 1)
    return [t.requires_grad_(requires_grad) for t in (image, seeds, weights)]


def test_released_reblur_model_is_reproduced():
    vectors = torch.load(shared_path("reference", "jdrl_reference_vectors.pt"), weights_only=True)
    state = vectors["reblur_state_dict"]
    for impl in ("ring", "direct"):
        for prefix in ("", "module."):
            module = ReblurModule(impl=impl).load_released({prefix + k: v for k, v in state.items()})
            with torch.no_grad():
                out = module(vectors["sharp"], vectors["blurry"])
            assert (out - vectors["reblurred"]).abs().max() <= 1e-5


@pytest.mark.parametrize("support", ["square", "disk"])
def test_ring_equals_direct_forward_and_gradients(support):
    image, seeds, weights = _inputs(requires_grad=True)
    probe = torch.randn(2, 3, 19, 23, generator=torch.Generator().manual_seed(1))
    results = []
    for impl in ("ring", "direct"):
        out = isotropic_reblur(image, seeds, weights, impl=impl, support=support)
        grads = torch.autograd.grad((out * probe).sum(), (image, seeds, weights))
        results.append((out, grads))
    (out_r, grads_r), (out_d, grads_d) = results
    assert (out_r - out_d).abs().max() <= 1e-5
    for g_r, g_d in zip(grads_r, grads_d):
        assert (g_r - g_d).abs().max() <= 1e-5 * max(1.0, g_d.abs().max().item())


@pytest.mark.parametrize("sums", ["shift", "conv"])
@pytest.mark.parametrize("length", [2, 3, 4, 5, 6, 7, 8])
@pytest.mark.parametrize("support", ["square", "disk"])
def test_ring_equals_direct_for_every_kernel_size(length, support, sums):
    generator = torch.Generator().manual_seed(length)
    image = torch.rand(1, 3, 17, 16, generator=generator, dtype=torch.float64)
    seed = torch.randn(1, length, 17, 16, generator=generator, dtype=torch.float64, requires_grad=True)
    weights = torch.softmax(torch.randn(1, 2, 17, 16, generator=generator, dtype=torch.float64), 1)
    ring = ring_reblur(image, [seed], weights, support, sums=sums)
    direct = direct_reblur(image, [seed], weights, support)
    assert (ring - direct).abs().max() < 1e-12
    g_ring, = torch.autograd.grad(ring.sum(), seed)
    g_direct, = torch.autograd.grad(direct.sum(), seed)
    assert (g_ring - g_direct).abs().max() < 1e-12


@pytest.mark.parametrize("support", ["square", "disk"])
def test_kernels_are_symmetric_normalised_and_do_not_shift(support):
    seeds = torch.rand(1, 8, 1, 1) * 3
    kernel = isotropic_kernels(seeds, support).view(15, 15)
    assert kernel.sum().item() == pytest.approx(1.0, abs=1e-5)
    for variant in (kernel.flip(0), kernel.flip(1), kernel.T):
        assert torch.allclose(kernel, variant)
    if support == "disk":
        assert kernel[0, 0] == 0 and kernel[0, 7] > 0
    else:
        assert kernel[0, 0] > 0  # released: corners keep exp(0)/Z
    impulse = torch.zeros(1, 3, 31, 31)
    impulse[..., 15, 15] = 1.0
    seed_map = seeds.expand(1, 8, 31, 31)
    weights = torch.zeros(1, 2, 31, 31)
    weights[:, 1] = 1
    out = ring_reblur(impulse, [seed_map], weights, support)[0, 0]
    ys, xs = torch.meshgrid(torch.arange(31.0), torch.arange(31.0), indexing="ij")
    assert (out * ys).sum() / out.sum() == pytest.approx(15.0, abs=1e-5)
    assert (out * xs).sum() / out.sum() == pytest.approx(15.0, abs=1e-5)


def test_seed_interpolation_follows_the_radius():
    seeds = torch.tensor([0.0, 1.0, 2.0, 3.0]).view(1, 4, 1, 1)  # a_rho = rho: logits equal the radius
    logits = torch.log(isotropic_kernels(seeds, "disk").view(7, 7))
    logits = logits - logits[3, 3]
    assert logits[3, 5].item() == pytest.approx(2.0, abs=1e-5)
    assert logits[4, 4].item() == pytest.approx(2 ** 0.5, abs=1e-5)
    assert logits[5, 4].item() == pytest.approx(5 ** 0.5, abs=1e-5)


@pytest.mark.parametrize("kernel, kpn", [("isotropic", 35), ("free", 679), ("single", 8)])
def test_module_variants(kernel, kpn):
    module = ReblurModule(kernel=kernel, features=8)
    assert module.kpn.out.out_channels == kpn
    assert hasattr(module, "kernel_map_gene") == (kernel != "single")
    restored, blurry = torch.rand(1, 3, 20, 20), torch.rand(1, 3, 20, 20)
    out = module(restored, blurry)
    assert out.shape == restored.shape
    out.mean().backward()
    assert all(p.grad is not None for p in module.parameters())


def test_released_init_and_parameter_count():
    module = ReblurModule()
    assert sum(p.numel() for p in module.parameters()) == 474_987
    assert all(torch.all(m.bias == 0) for m in module.modules() if isinstance(m, torch.nn.Conv2d))


@pytest.mark.parametrize("support", ["square", "disk"])
def test_both_ways_of_summing_rings_agree_in_float32_with_all_seven_sizes(support):
    from jdrl.reblur.kernels import split_seeds

    image, seeds, weights = _inputs(requires_grad=True)
    probe = torch.randn(2, 3, 19, 23, generator=torch.Generator().manual_seed(3))
    results = []
    for sums in ("shift", "conv"):
        out = ring_reblur(image, split_seeds(seeds), weights, support, sums=sums)
        results.append((out, torch.autograd.grad((out * probe).sum(), (image, seeds, weights))))
    (out_s, grads_s), (out_c, grads_c) = results
    assert (out_s - out_c).abs().max() <= 1e-5
    for g_s, g_c in zip(grads_s, grads_c):
        assert (g_s - g_c).abs().max() <= 1e-5 * max(1.0, g_s.abs().max().item())
    with pytest.raises(ValueError, match="sums must be one of"):
        ring_reblur(image, split_seeds(seeds), weights, support, sums="fft")
