"""Result files agree with each other, the HTML report is complete and loads, `jdrl plot` draws a run."""

from __future__ import annotations

import csv
import json
import math
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from jdrl.cli import main
from jdrl.data.synthetic import SynthParams
from jdrl.data.datasets import SyntheticPairs
from jdrl.evaluation import EvalResult, evaluate
from jdrl.evaluation.plot import plot_run, read_numeric_csv
from jdrl.evaluation.report import (
    StripWriter,
    format_value,
    make_strip,
    markdown_table,
    read_metrics_csv,
    write_report,
    write_results,
)
from jdrl.nets import create_net
from tests.conftest import textured_image


@pytest.fixture(scope="module")
def results() -> list[EvalResult]:
    """A tiny network and the input baseline on two synthetic pairs, thumbnails kept for the network."""
    source = textured_image(np.random.default_rng(7), 160, 160)
    dataset = SyntheticPairs(2, SynthParams(size=64), seed=5, sources=[("texture", source)])
    net = evaluate(dataset, create_net("unet", width=0.0625), label="unet", keep_images=True)
    return [net, evaluate(dataset, None)]


def markdown_rows(text: str) -> dict[str, dict[str, str]]:
    """The table of summary.md as {result label: {header: cell}}."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    cells = [[c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))] for line in lines]
    header, rows = cells[0], cells[2:]
    return {row[0]: dict(zip(header, row)) for row in rows}


# ----------------------------------------------------------------------------- result files


def test_csv_json_and_markdown_agree(results, tmp_path):
    paths = write_results(results, tmp_path)
    rows = read_metrics_csv(paths["csv"])
    summary = json.loads(paths["json"].read_text())
    table = markdown_rows(paths["md"].read_text())
    assert [r["label"] for r in summary["results"]] == ["unet", "input"] == list(table)
    columns = summary["columns"]
    with open(paths["csv"], newline="") as handle:
        assert next(csv.reader(handle)) == ["name", "result", *columns]
    assert "psnr_aligned" in columns and "flow_error" in columns
    for entry in summary["results"]:
        mine = [r for r in rows if r["result"] == entry["label"]]
        assert len(mine) == entry["count"] == 2 and int(table[entry["label"]]["images"]) == 2
        for column in columns:
            cells = [r[column] for r in mine]
            mean = entry["means"][column]
            if column.startswith("lpips"):  # unavailable offline: empty, null, n/a - never a number
                assert cells == [None, None] and mean is None
                continue
            assert mean == pytest.approx(float(np.mean(cells)), rel=1e-12, abs=1e-15)
            shown = [cell for header, cell in table[entry["label"]].items() if header not in ("result", "images")]
            assert format_value(mean, column) in shown
        assert set(table[entry["label"]].values()) >= {"n/a"}
    assert all(entry["options"]["lpips"] == "LPIPS not requested" for entry in summary["results"])
    assert {"jdrl", "torch", "scikit-image"} <= set(summary["versions"])


def test_markdown_rounds_each_metric_its_own_way():
    result = EvalResult([{"name": "a", "psnr": 24.6149, "ssim": 0.75749, "mae": 0.042649, "flow_error": 1.234}],
                        {"psnr": 24.6149, "ssim": 0.75749, "mae": 0.042649, "flow_error": 1.234}, {}, label="x|y")
    row = markdown_rows(markdown_table(result))["x\\|y"]
    assert row["GT PSNR↑"] == "24.61" and row["GT SSIM↑"] == "0.757" and row["GT MAE↓"] == "0.0426"
    assert row["GT LPIPS↓"] == "n/a" and row["flow error to truth (px)↓"] == "1.23"


def test_infinite_psnr_round_trips(tmp_path):
    result = EvalResult([{"name": "same", "psnr": math.inf, "ssim": 1.0, "mae": 0.0}],
                        {"psnr": math.inf, "ssim": 1.0, "mae": 0.0}, {"note": math.inf})
    paths = write_results(result, tmp_path)
    assert read_metrics_csv(paths["csv"])[0]["psnr"] == math.inf
    summary = json.loads(paths["json"].read_text())  # strict JSON: no bare Infinity
    assert float(summary["results"][0]["means"]["psnr"]) == math.inf
    assert markdown_rows(paths["md"].read_text())["output"]["GT PSNR↑"] == "inf"


# ----------------------------------------------------------------------------- strips and HTML


class ImageAndTableParser(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources: list[str] = []
        self.tables = 0
        self.external: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.sources.append(attrs["src"])
        if tag == "table":
            self.tables += 1
        for key in ("src", "href"):
            if re.match(r"^[a-z]+://|^//", attrs.get(key) or ""):
                self.external.append(attrs[key])


def test_strip_is_labelled_and_small():
    panels = {"input": np.random.default_rng(0).random((3, 600, 900)), "mask": np.ones((3, 600, 900))}
    strip = make_strip({k: torch.from_numpy(v).float() for k, v in panels.items()}, max_side=384)
    assert strip.dtype == np.uint8 and strip.shape[0] <= 384 + 22 and strip.shape[1] == 2 * 384 + 4
    # white text on a black band (anti-aliased: OpenCV 4.12 draws this label's brightest pixel at 253)
    assert strip[:22, :384].max() >= 250 and strip[:22, :384].min() == 0


def test_html_report_structure(results, tmp_path):
    page = write_report(results, tmp_path / "report")
    parser = ImageAndTableParser()
    parser.feed(page.read_text(encoding="utf-8"))
    assert parser.tables == 1 + len(results)  # means + one per-image table per result
    assert len(parser.sources) == 2 and not parser.external
    for source in parser.sources:
        strip = cv2.imread(str(page.parent / source))
        assert strip is not None and strip.shape[0] <= 384 + 22


def test_streamed_strips_feed_the_report(rng, tmp_path):
    dataset = SyntheticPairs(1, SynthParams(size=48), seed=1, sources=[("t", textured_image(rng, 128, 128))])
    writer = StripWriter(tmp_path / "r")
    result = evaluate(dataset, None, on_image=writer)
    assert result.images is None and list(writer.paths) == ["00000"]
    page = write_report(result, tmp_path / "r", strips=writer.paths)
    assert 'src="strips/00000.png"' in page.read_text()
    with pytest.raises(FileNotFoundError):
        write_report(result, tmp_path / "elsewhere", strips=writer.paths)


def chromium_binary() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if shutil.which(name):
            return shutil.which(name)
    return None


CHECK_SCRIPT = """<img src="strips/deliberately-missing.png" alt="control">
<script>window.addEventListener('load', () => {
  const images = [...document.images];
  const loaded = images.filter(i => i.complete && i.naturalWidth > 0).length;
  document.body.setAttribute('data-check', images.length + '/' + loaded);
});</script>
</body>"""


def test_html_report_loads_every_image_in_headless_chromium(results, tmp_path):
    browser = chromium_binary()
    if browser is None:
        pytest.skip("no chromium/chrome on PATH (apt-get install chromium to run this check)")
    page = write_report(results, tmp_path / "report")
    # A copy of the page with a checker script and one deliberately broken image as a control.
    check = page.with_name("check.html")
    check.write_text(page.read_text(encoding="utf-8").replace("</body>", CHECK_SCRIPT), encoding="utf-8")
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files",
               "--virtual-time-budget=10000", "--dump-dom", check.resolve().as_uri()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    found = re.search(r'data-check="(\d+)/(\d+)"', done.stdout)
    assert found, f"chromium gave no result: {done.stderr[-2000:]}"
    total, loaded = map(int, found.groups())
    assert total == 3 and loaded == 2  # both strips load; the control does not


# ----------------------------------------------------------------------------- jdrl plot


def fake_run(folder: Path, with_val: bool = True) -> Path:
    folder.mkdir(parents=True)
    lines = ["step,epoch,lr,loss,deblur,reblur,mask_fwd,time_s"]
    for step in range(0, 200, 10):
        reblur = "" if step < 50 else f"{0.1 / (1 + step):.5f}"  # no reblurring during warm-up
        lines.append(f"{step},{step // 100},{1e-4 * (0.99 ** step):.3e},{1 / (1 + step):.5f},"
                     f"{0.5 / (1 + step):.5f},{reblur},{0.9:.2f},{0.05 * step:.2f}")
    (folder / "log.csv").write_text("\n".join(lines) + "\n")
    if with_val:
        (folder / "val.csv").write_text("step,epoch,psnr,ssim,psnr_deformed,psnr_aligned,flow_error\n"
                                        "100,1,22.5,0.70,24.1,23.0,1.5\n200,2,23.1,0.72,24.9,23.8,1.1\n")
    return folder


def test_plot_draws_a_png(tmp_path):
    run = fake_run(tmp_path / "run")
    series = read_numeric_csv(run / "log.csv")
    assert len(series["reblur"]) == 15 and len(series["loss"]) == 20  # empty cells skipped
    path = plot_run(run)
    assert path == run / "curves.png"
    image = cv2.imread(str(path))
    assert image is not None and image.shape[0] > 300 and image.shape[1] > 600


def test_plot_without_val_and_cli(tmp_path, capsys):
    run = fake_run(tmp_path / "run", with_val=False)
    target = tmp_path / "figs" / "c.png"
    assert main(["plot", str(run), "-o", str(target)]) == 0
    assert cv2.imread(str(target)) is not None and str(target) in capsys.readouterr().out


def test_plot_without_log_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no log.csv"):
        plot_run(tmp_path / "empty")
    assert main(["plot", str(tmp_path / "empty")]) == 2
    assert "no log.csv" in capsys.readouterr().err
