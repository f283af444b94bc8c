
from jdrl.cli import main
from jdrl.data.pairs import discover_pairs
from jdrl.data.prepare import PatchSpec, patch_grid, patch_starts, prepare_patches
from jdrl.images import read_image_with_depth, write_image
from tests.conftest import textured_image


def test_dpdd_grid_matches_dpdnet():
    spec = PatchSpec()  # 512 px, 60 % overlap
    assert spec.stride == 204
    assert patch_starts(1680, 512, 204) == [0, 204, 408, 612, 816, 1020, 1168]
    assert patch_starts(1120, 512, 204) == [0, 204, 408, 608]
    assert len(patch_grid(1120, 1680, spec)) == 28
    assert patch_starts(512, 512, 204) == [0]
    assert patch_starts(500, 512, 204) == []


def test_prepare_writes_the_expected_patch_count(tmp_path, rng):
    for i in range(2):
        write_image(tmp_path / "src" / "blur" / f"p{i}.png", textured_image(rng, 140, 210), bit_depth=16)
        write_image(tmp_path / "src" / "gt" / f"p{i}.png", textured_image(rng, 140, 210), bit_depth=16)
    spec = PatchSpec(patch=64, overlap=0.6, drop=0.3)  # stride 25: 7 x 5 positions per image
    assert len(patch_grid(140, 210, spec)) == 35
    report = prepare_patches(discover_pairs(tmp_path / "src"), tmp_path / "out", spec)
    assert report.candidates == 70 and report.dropped == 21 and report.written == 49
    written = sorted((tmp_path / "out" / "gt").iterdir())
    assert len(written) == 49 and len(list((tmp_path / "out" / "blur").iterdir())) == 49
    patch, depth = read_image_with_depth(written[0])
    assert patch.shape == (64, 64, 3) and depth == 16


def test_flat_patches_are_the_ones_dropped(tmp_path, rng):
    sharp = textured_image(rng, 64, 128)
    sharp[:, :64] = 0.5  # left half flat
    write_image(tmp_path / "src" / "blur" / "a.png", sharp)
    write_image(tmp_path / "src" / "gt" / "a.png", sharp)
    prepare_patches(discover_pairs(tmp_path / "src"), tmp_path / "out", PatchSpec(64, 0.0, 0.5))
    assert [p.name for p in (tmp_path / "out" / "gt").iterdir()] == ["a_y0000_x0064.png"]


def test_prepare_command(tmp_path, rng, capsys):
    write_image(tmp_path / "src" / "blur" / "a.png", textured_image(rng, 100, 100))
    write_image(tmp_path / "src" / "gt" / "a.png", textured_image(rng, 100, 100))
    assert main(["prepare", str(tmp_path / "src"), "-o", str(tmp_path / "out"), "--patch", "50", "--quiet"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert len(list((tmp_path / "out" / "blur").iterdir())) > 0
