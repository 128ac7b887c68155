"""The compare stage's HTML report in a real browser: headless Chromium (Debian's package; .ci/run installs
it) opens the page without console messages, and its screenshot shows the tables and the plots."""

import json
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from compclip.evaluation.compare import compare

BROWSER = next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)


def _fig(acc, n=100):
    return {"accuracy": acc, "ci_low": acc - 0.05, "ci_high": acc + 0.05, "n": n}


def _metrics(shift: float) -> dict:
    suite = {
        "sugarcrepe": {"aggregate": {"mean": _fig(0.6 + shift)},
                       "files": {"swap_att": {**_fig(0.6 + shift), "seen": _fig(0.62 + shift, 70),
                                              "held_out": _fig(0.55 + shift, 30)}}},
        "aro-relation": {"aggregate": {"macro": _fig(0.55 + shift)}, "files": {"visual_genome_relation": _fig(0.5)}},
        "crepe": {"aggregate": {"R@1": _fig(0.4 + shift)},
                  "files": {"swap": {"R@1": _fig(0.4), "R@3": _fig(0.8), "mean_rank": 2.0, "n": 100}}},
        "hard-positives": {"aggregate": {"original": _fig(0.6), "augmented": _fig(0.4 + shift),
                                         "brittleness": _fig(0.3 - shift)}, "files": {}},
        "abstraction": {"aggregate": {"i2t": _fig(0.8)},
                        "files": {"level1": {"i2t": _fig(0.7 + shift), "t2i": _fig(0.6)},
                                  "level2": {"i2t": _fig(0.8), "t2i": _fig(0.7)}}},
    }
    return {"sugarcrepe": {"swap_att": _fig(0.6 + shift)}, "suite": suite}


@pytest.fixture()
def report(tmp_path):
    paths = {}
    for m, shift in (("clip", 0.0), ("ce_clip", 0.1)):
        (tmp_path / m).mkdir()
        (tmp_path / m / "metrics.json").write_text(json.dumps(_metrics(shift)))
        paths[m] = tmp_path / m / "metrics.json"
    blind = _metrics(-0.1)
    blind["suite"].pop("abstraction")
    (tmp_path / "blind.json").write_text(json.dumps({"suite": blind["suite"]}))
    compare(paths, tmp_path / "cmp", blind=tmp_path / "blind.json")
    return tmp_path / "cmp"


def test_markdown_has_every_benchmark_n_cis_and_paper_figures(report):
    md = (report / "compare.md").read_text()
    assert "| | n | clip | ce_clip | blind |" in md
    assert "| **macro** | 100 | 55.0 [50.0, 60.0] | 65.0 [60.0, 70.0] | 45.0 [40.0, 50.0] |" in md
    assert "swap_att (held_out) | 30 |" in md
    assert "Published figures (paper figures on the real benchmarks, not these data)" in md
    bars = json.loads((report / "headline_plot.json").read_text())
    assert {"label": "aro-relation/macro · blind", "figure": "aro-relation/macro", "column": "blind",
            "accuracy": 45.0, "ci_low": 40.0, "ci_high": 50.0, "n": 100} in bars
    rows = json.loads((report / "compare.json").read_text())
    assert {"method": "blind", "metric": "crepe/R@1", "value": 0.30000000000000004, "ci_low": 0.25000000000000006,
            "ci_high": 0.35000000000000003, "n": 100} in rows


@pytest.mark.skipif(BROWSER is None, reason="no Chromium (.ci/run installs Debian's chromium package)")
def test_html_report_opens_in_chromium_without_console_messages(report, tmp_path):
    page = report / "compare.html"
    html = page.read_text()
    assert "<script" not in html and "http" not in html.split("</style>")[1]  # self-contained, nothing to fetch
    shot = tmp_path / "shot.png"
    run = subprocess.run([BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                          "--window-size=1400,4000", "--enable-logging=stderr", "--v=0",
                          f"--screenshot={shot}", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    console = [line for line in run.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], console
    img = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    # the plots: matplotlib's first two colours fill the bars (#1f77b4, #ff7f0e)
    for colour in ((31, 119, 180), (255, 127, 14)):
        assert (np.abs(img - colour).sum(axis=2) < 12).sum() > 500, colour
    # the tables: their header cells (#f0f0f0) and borders (#ccc)
    assert (np.abs(img - (240, 240, 240)).sum(axis=2) == 0).sum() > 2000
    assert (np.abs(img - (204, 204, 204)).sum(axis=2) == 0).sum() > 1000
    dom = subprocess.run([BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    for bench in ("sugarcrepe", "aro-relation", "crepe", "hard-positives", "abstraction"):
        assert f'id="table-{bench}"' in dom
    assert dom.count("<img") == 4  # headline bars, abstraction levels, brittleness vs ATA, per-type bars


def test_report_is_logged_to_mlflow(tmp_path):
    import mlflow

    from tests.conftest import tiny_params

    cfg = tiny_params(tmp_path).mlflow
    (tmp_path / "clip").mkdir()
    (tmp_path / "clip/metrics.json").write_text(json.dumps(_metrics(0.0)))
    compare({"clip": tmp_path / "clip/metrics.json"}, tmp_path / "cmp", mlflow_cfg=cfg)
    client = mlflow.MlflowClient(cfg.tracking_uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                              "attributes.run_name = 'compare'")
    assert len(runs) == 1
    names = {f.path for f in client.list_artifacts(runs[0].info.run_id, "report")}
    assert names == {"report/compare.md", "report/compare.html", "report/compare.png", "report/compare.json",
                     "report/headline_plot.json"}


def test_cli_report_prints_the_headline_table(tmp_path, capsys):
    from compclip.cli import main

    for m, shift in (("clip", 0.0), ("blind", -0.1)):
        (tmp_path / m).mkdir()
        metrics = _metrics(shift) if m == "clip" else {"suite": _metrics(shift)["suite"]}
        (tmp_path / m / "metrics.json").write_text(json.dumps(metrics))
    assert main(["report", str(tmp_path / "clip/metrics.json"), str(tmp_path / "blind/metrics.json")]) == 0
    out = capsys.readouterr().out
    assert "swap_att" in out  # the SugarCrepe table, for the method that has the stage metrics
    assert "aro-relation/macro" in out and "55.0 [50.0, 60.0]" in out and "45.0 [40.0, 50.0]" in out
