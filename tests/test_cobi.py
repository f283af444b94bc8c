"""CoBi (contextual bilateral loss, Zoom to Learn): naive formula, sanity, training, VGG loading."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from jdrl.cobi import CoBiLoss, cobi_loss, grid_features, load_vgg_features
from jdrl.errors import WeightsError
from tests.conftest import textured_image


def naive_cobi_loss(out, tgt, p, s, ws, h, distance="cosine", combine="distance", eps=1e-5, index=None):
    """The definition with explicit loops (numpy, float64)."""
    out, tgt = np.asarray(out, np.float64), np.asarray(tgt, np.float64)
    batch, _, height, width = out.shape
    losses = []
    for b in range(batch):
        fo, ft, pts = [], [], []
        for y0 in range(0, height - p + 1, s):
            for x0 in range(0, width - p + 1, s):
                fo.append(out[b, :, y0 : y0 + p, x0 : x0 + p].ravel())
                ft.append(tgt[b, :, y0 : y0 + p, x0 : x0 + p].ravel())
                pts.append(((y0 + (p - 1) / 2) / height, (x0 + (p - 1) / 2) / width))
        if index is not None:
            fo, ft, pts = [fo[k] for k in index], [ft[k] for k in index], [pts[k] for k in index]
        n = len(pts)
        mu = sum(ft) / n
        d = np.zeros((n, n))
        sp = np.zeros((n, n))
        for i in range(n):
            for j in range(n):
                if distance == "cosine":
                    a, t = fo[i] - mu, ft[j] - mu
                    cos = float(a @ t) / (np.linalg.norm(a) * np.linalg.norm(t))
                    d[i, j] = (1 - cos) / 2
                else:
                    d[i, j] = float(((255 * fo[i] - 255 * ft[j]) ** 2).sum())
                dy, dx = pts[i][0] - pts[j][0], pts[i][1] - pts[j][1]
                sp[i, j] = math.hypot(dy, dx) if combine == "distance" else (255 * dy) ** 2 + (255 * dx) ** 2

        def cx(dist, n=n):
            res = np.zeros((n, n))
            for i in range(n):
                mn = min(dist[i, k] for k in range(n))
                w = [math.exp((1 - dist[i, k] / (mn + eps)) / h) for k in range(n)]
                for j in range(n):
                    res[i, j] = w[j] / sum(w)
            return res

        if combine == "distance":
            c = cx(d + ws * sp)
        else:
            c = (1 - ws) * cx(d) + ws * cx(sp)
        cobi = sum(max(c[i, j] for i in range(n)) for j in range(n)) / n
        losses.append(-math.log(cobi))
    return sum(losses) / batch


CASES = [
    {"shape": (1, 3, 8, 8), "p": 3, "s": 2, "ws": 0.1, "h": 1.0},
    {"shape": (1, 3, 8, 8), "p": 3, "s": 2, "ws": 0.0, "h": 1.0},
    {"shape": (2, 3, 9, 7), "p": 3, "s": 2, "ws": 0.1, "h": 0.5, "eps": 1e-3},
    {"shape": (1, 3, 8, 8), "p": 3, "s": 2, "ws": 0.1, "h": 0.5, "distance": "l2", "combine": "cx", "eps": 1e-3},
    {"shape": (2, 3, 7, 10), "p": 2, "s": 3, "ws": 0.3, "h": 1.0, "distance": "cosine", "combine": "cx"},
    {"shape": (1, 3, 6, 6), "p": 1, "s": 1, "ws": 0.1, "h": 1.0, "distance": "l2", "combine": "distance"},
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_matches_the_naive_formula(case):
    case = dict(case)
    shape = case.pop("shape")
    gen = torch.Generator().manual_seed(11)
    out = torch.rand(shape, generator=gen, dtype=torch.float64)
    tgt = (0.6 * out + 0.4 * torch.rand(shape, generator=gen, dtype=torch.float64)).roll(1, -1)
    expected = naive_cobi_loss(out.numpy(), tgt.numpy(), **case)
    extra = {k: case[k] for k in ("distance", "combine", "eps") if k in case}
    got = cobi_loss(
        out, tgt, patch_size=case["p"], stride=case["s"], spatial_weight=case["ws"], band_width=case["h"],
        max_points=10_000, **extra,
    )  # fmt: skip
    assert abs(got.item() - expected) < 1e-5, (got.item(), expected)


def test_sampled_subset_matches_the_naive_formula_on_that_subset():
    gen = torch.Generator().manual_seed(2)
    out, tgt = torch.rand(1, 3, 8, 8, generator=gen, dtype=torch.float64), torch.rand(1, 3, 8, 8, generator=gen, dtype=torch.float64)
    got = cobi_loss(out, tgt, patch_size=3, stride=2, max_points=5, generator=torch.Generator().manual_seed(42))
    index = torch.randperm(9, generator=torch.Generator().manual_seed(42))[:5].tolist()
    assert abs(got.item() - naive_cobi_loss(out.numpy(), tgt.numpy(), 3, 2, 0.1, 1.0, index=index)) < 1e-5
    # seeded: reproducible; a different seed draws another subset
    again = cobi_loss(out, tgt, patch_size=3, stride=2, max_points=5, generator=torch.Generator().manual_seed(42))
    other = cobi_loss(out, tgt, patch_size=3, stride=2, max_points=5, generator=torch.Generator().manual_seed(43))
    assert got.item() == again.item() and got.item() != other.item()


def test_grid_points_are_patch_centres():
    feats, pos = grid_features(torch.zeros(2, 3, 8, 10), 3, 2)
    assert feats.shape == (2, 3 * 4, 3 * 3 * 3) and pos.shape == (12, 2)
    np.testing.assert_allclose(pos[0].numpy(), [1 / 8, 1 / 10])
    np.testing.assert_allclose(pos[-1].numpy(), [5 / 8, 7 / 10])  # rows 1, 3, 5; columns 1, 3, 5, 7


def test_identical_images_and_ties():
    noise = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    # distinct features: every target's best match is itself with CX ≈ 1, with or without the spatial term
    for ws in (0.1, 0.0):
        assert cobi_loss(noise, noise, patch_size=3, stride=2, spatial_weight=ws).item() < 1e-6
    # repeated features: columns with period 4 sampled at stride 2 give two kinds of patch, N/2 of each.
    # Without the spatial term each target ties with N/2 outputs: CX = 2/N, loss = log(N/2) exactly;
    # the spatial term breaks the ties (d_ii = 0 < d_ik = w_s·|p_i - p_k|): loss back to ~0
    row = torch.tensor([0.1, 0.7, 0.4, 0.9], dtype=torch.float64).repeat(4)
    periodic = torch.stack([row, row.flip(0), 1 - row]).view(1, 3, 1, 16).expand(1, 3, 16, 16)
    n = 7 * 7  # 3x3 patches at stride 2 in 16x16
    assert cobi_loss(periodic, periodic, patch_size=3, stride=2, spatial_weight=0.1).item() < 1e-6
    tied = cobi_loss(periodic, periodic, patch_size=3, stride=2, spatial_weight=0.0).item()
    # 7 columns of grid points: x0 = 0, 2, .., 12 -> kinds 0,2,0,2,.. = 4 and 3 columns
    expected = -math.log((4 * 7 * (1 / 28) + 3 * 7 * (1 / 21)) / n)
    assert abs(tied - expected) < 1e-6, (tied, expected)
    # a constant image: centred features are all zero, every cosine distance is 0.5, CX is uniform
    # (loss = log N); the spatial term only tilts d by 0.1·|Δp| against 0.5, so it barely helps there
    flat = torch.full((1, 3, 16, 16), 0.5)
    assert abs(cobi_loss(flat, flat, patch_size=3, stride=2, spatial_weight=0.0).item() - math.log(n)) < 1e-4
    assert math.log(n) - 0.3 < cobi_loss(flat, flat, patch_size=3, stride=2, spatial_weight=0.1).item() < math.log(n)


def test_a_shifted_copy_scores_better_than_noise(rng):
    image = torch.from_numpy(textured_image(rng, 72, 72)).permute(2, 0, 1)[None]
    target = image[..., 4:68, 4:68]
    shifted = image[..., 6:70, 2:66]  # (2, -2) px misaligned
    noise = torch.rand_like(target)
    blurred = torch.nn.functional.avg_pool2d(target, 5, 1, 2, count_include_pad=False)
    for combine in ("distance", "cx"):
        kw = {"max_points": 512, "combine": combine}
        loss = {
            name: cobi_loss(x, target, generator=torch.Generator().manual_seed(0), **kw).item()
            for name, x in (("same", target), ("shifted", shifted), ("blurred", blurred), ("noise", noise))
        }
        assert loss["same"] < 1e-6 < loss["shifted"] < loss["noise"], loss
        assert loss["blurred"] < loss["noise"], loss


def test_gradients_are_finite_even_at_ties():
    for out, tgt in (
        (torch.rand(1, 3, 12, 12), torch.rand(1, 3, 12, 12)),
        (torch.full((1, 3, 12, 12), 0.3), torch.full((1, 3, 12, 12), 0.3)),
    ):
        out = out.clone().requires_grad_(True)
        for combine, distance in (("distance", "cosine"), ("cx", "l2")):
            out.grad = None
            cobi_loss(out, tgt, patch_size=3, stride=1, combine=combine, distance=distance).backward()
            assert torch.isfinite(out.grad).all()


def test_bad_options():
    x = torch.rand(1, 3, 8, 8)
    with pytest.raises(ValueError, match="cosine"):
        cobi_loss(x, x, distance="l1")
    with pytest.raises(ValueError, match="distance.*cx"):
        CoBiLoss(combine="sum")
    with pytest.raises(ValueError, match="differ"):
        cobi_loss(x, x[..., :7])


def test_module_trains_a_tiny_net(rng):
    torch.manual_seed(0)
    target = torch.from_numpy(textured_image(rng, 24, 24)).permute(2, 0, 1)[None]
    source = torch.nn.functional.avg_pool2d(target, 3, 1, 1, count_include_pad=False)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1))
    loss_fn = CoBiLoss(patch_size=5, stride=2, max_points=1024)  # 10x10 points: all used, deterministic
    assert list(loss_fn.parameters()) == [] and loss_fn.state_dict() == {}
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = loss_fn(net(source), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.7 * losses[0], losses


def test_missing_or_wrong_vgg_weights(tmp_path):
    with pytest.raises(WeightsError, match="not found.*nothing is downloaded"):
        CoBiLoss(vgg_weights=str(tmp_path / "vgg19.pth"))
    bad = tmp_path / "bad.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, bad)
    with pytest.raises(WeightsError, match="missing features.0.bias"):
        load_vgg_features(bad)
    torch.save({"features.0.weight": torch.zeros(64, 3, 5, 5)}, bad)
    with pytest.raises(WeightsError, match=r"features.0.weight: \(64, 3, 5, 5\)"):
        load_vgg_features(bad)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="could not be read"):
        load_vgg_features(tmp_path / "junk.pth")


def test_cobi_vgg_with_a_small_weight_file(tmp_path):
    """A real torchvision VGG-19 file is 548 MB; the first 14 layers (what CoBi-VGG uses) are 4.6 MB."""
    import torchvision

    torch.manual_seed(0)
    features = torchvision.models.vgg19(weights=None).features[:14]
    path = tmp_path / "vgg19_features.pth"
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, path)
    loss_fn = CoBiLoss(vgg_weights=str(path), max_points=256, generator=torch.Generator().manual_seed(0))
    assert list(loss_fn.parameters()) == [] and loss_fn.state_dict() == {}
    vgg = loss_fn._vgg[0]
    assert not vgg.training and not any(p.requires_grad for p in vgg.parameters())
    torch.testing.assert_close(vgg[12].weight, features[12].weight)
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    maps = loss_fn.vgg_maps(image)
    assert [(m.shape[1:], w) for m, w in maps] == [
        ((64, 32, 32), 1.0), ((128, 16, 16), 1.0), ((256, 8, 8), 0.5)
    ]
    out = image.roll(1, -1).clone().requires_grad_(True)
    loss = loss_fn(out, image)
    loss.backward()
    assert math.isfinite(loss.item()) and loss.item() > 0 and torch.isfinite(out.grad).all()
    assert loss_fn(image, image).item() < loss.item() < loss_fn(torch.rand_like(image), image).item()
