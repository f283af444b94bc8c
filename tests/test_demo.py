import json
import math

from jdrl.cli import main


def test_a_seconds_long_demo_writes_a_complete_report(tmp_path, monkeypatch, capsys):
    from jdrl import demo
    from jdrl.data.synthetic import SynthParams

    tiny = dict(steps=3, width=0.0625, crop=32, batch=2, train_pairs=4, eval_pairs=2, warmup=1, reblur_features=4,
                synth=SynthParams(size=64, r_max=2.0, shift=2.0, zoom=0.01, exposure=0.02, noise=0.005))
    original = demo.DemoSettings
    monkeypatch.setattr(demo, "DemoSettings", lambda **kw: original(**{**kw, **tiny}))
    assert main(["demo", "--out", str(tmp_path), "--oracle", "--quiet"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert list(results) == ["input", "pixel", "jdrl", "oracle"]
    for row in results.values():
        assert set(row) == {"psnr", "ssim", "mae", "flow_error"}
        assert all(isinstance(v, float) and math.isfinite(v) for v in row.values())
    for name in ("results.md", "index.html", "settings.json", "curves_pixel.png", "curves_jdrl.png", "curves_oracle.png"):
        assert (tmp_path / name).is_file(), name
    strips = sorted((tmp_path / "strips").iterdir())
    assert len(strips) == 2
    html = (tmp_path / "index.html").read_text()
    assert all(f"strips/{p.name}" in html for p in strips) and "<table>" in html
    out = capsys.readouterr().out
    assert "| jdrl |" in out and "| oracle |" in out
