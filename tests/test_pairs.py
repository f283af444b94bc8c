from pathlib import Path

import numpy as np
import pytest

from jdrl.cli import main
from jdrl.data.pairs import DatasetError, detect_layout, discover_pairs, load_pairs
from jdrl.images import write_image


def _pair(folder_a: Path, folder_b: Path, name: str, size=(24, 32), size_b=None):
    write_image(folder_a / f"{name}.png", np.full((*size, 3), 0.3))
    write_image(folder_b / f"{name}.png", np.full((*(size_b or size), 3), 0.6))


@pytest.mark.parametrize(
    "layout, blur, sharp",
    [
        ("sdd", "blur", "gt"),
        ("dpdd", "test_c/source", "test_c/target"),
        ("realdof", "source", "target"),
        ("folders", "input", "sharp"),
    ],
)
def test_layouts_are_detected(tmp_path, layout, blur, sharp):
    for i in range(3):
        _pair(tmp_path / blur, tmp_path / sharp, f"im{i}")
    assert detect_layout(tmp_path) == layout
    found = discover_pairs(tmp_path, split="test")
    assert found.layout == layout and len(found) == 3 and not found.problems
    assert found.pairs[0].blur.parent.name == Path(blur).name


def test_csv_layout(tmp_path):
    _pair(tmp_path / "x", tmp_path / "y", "a")
    _pair(tmp_path / "x", tmp_path / "y", "b")
    (tmp_path / "pairs.csv").write_text("blur,sharp\nx/a.png,y/a.png\nx/b.png,y/b.png\n")
    assert detect_layout(tmp_path / "pairs.csv") == "csv"
    found = load_pairs(tmp_path / "pairs.csv")
    assert [p.name for p in found.pairs] == ["a", "b"]


def test_explicit_folders(tmp_path):
    _pair(tmp_path / "one", tmp_path / "two", "a")
    found = discover_pairs(tmp_path, blur_dir="one", sharp_dir="two")
    assert found.layout == "folders" and len(found) == 1


def test_synthetic_layout_carries_the_aligned_truth(tmp_path):
    for sub in ("blur", "gt", "aligned"):
        write_image(tmp_path / sub / "0.png", np.zeros((8, 8, 3)))
    found = discover_pairs(tmp_path)
    assert found.layout == "synthetic" and found.pairs[0].aligned is not None


def test_every_bad_file_is_reported_at_once(tmp_path):
    blur, gt = tmp_path / "blur", tmp_path / "gt"
    _pair(blur, gt, "good")
    write_image(blur / "lonely.png", np.zeros((24, 32, 3)))  # missing partner
    _pair(blur, gt, "corrupt")
    (gt / "corrupt.png").write_bytes(b"\x89PNG truncated")
    _pair(blur, gt, "mismatch", size_b=(24, 30))
    write_image(gt / "orphan.png", np.zeros((24, 32, 3)))  # the other direction

    with pytest.raises(DatasetError) as caught:
        load_pairs(tmp_path)
    message = str(caught.value)
    for name in ("lonely.png", "corrupt.png", "mismatch.png", "orphan.png"):
        assert name in message
    assert "no partner" in message and "size mismatch" in message and "not a readable image" in message
    assert len(caught.value.problems) == 4

    warnings = []
    kept = load_pairs(tmp_path, skip_bad=True, warn=warnings.append)
    assert [p.name for p in kept.pairs] == ["good"]
    assert len(warnings) == 1
    assert "left out 2 pair(s)" in warnings[0] and "2 unmatched" in warnings[0] and "1 pair(s) left" in warnings[0]


def test_images_smaller_than_the_crop_are_problems(tmp_path):
    _pair(tmp_path / "blur", tmp_path / "gt", "small", size=(20, 20))
    with pytest.raises(DatasetError, match="smaller than the 32px crop"):
        load_pairs(tmp_path, min_size=32)


def test_unknown_layout_says_what_is_expected(tmp_path):
    (tmp_path / "random").mkdir()
    with pytest.raises(DatasetError, match="layout not recognised"):
        detect_layout(tmp_path)


def test_data_check_command(tmp_path, capsys):
    _pair(tmp_path / "blur", tmp_path / "gt", "a")
    assert main(["data", "check", str(tmp_path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "layout:   sdd" in out and "1 usable" in out and "32x24 (1)" in out
    write_image(tmp_path / "gt" / "b.png", np.zeros((4, 4, 3)))
    assert main(["data", "check", str(tmp_path), "--quiet"]) == 1
    assert "b.png: no partner" in capsys.readouterr().out
