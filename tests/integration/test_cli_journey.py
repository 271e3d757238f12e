"""The `synth` command end to end: the README's main job (`synth demo`) on a
small slice, and `synth evaluate` / `report --html` / `reports list`, and
evaluation jobs (`evaluate --detach`, `evaluations watch|show|list|cancel`)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from synth_client import LocalPlatform
from tests.conftest import adult_slice

SYNTH = [sys.executable, "-m", "synth_client.cli"]


@pytest.mark.slow
def test_demo_runs_the_main_job_and_prints_the_report_and_page(tmp_path: Path) -> None:
    data = tmp_path / "adult-slice.csv"
    data.write_bytes(adult_slice(2000))
    run = subprocess.run(
        [
            *SYNTH,
            "demo",
            "--free-ports",
            "--exit",
            "--data-dir",
            str(tmp_path / "var"),
            "--dataset",
            str(data),
            "--epochs",
            "2",
            "--rows",
            "1500",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        stdin=subprocess.DEVNULL,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = run.stdout
    for step in ("1/4 upload", "2/4 train", "3/4 generate", "4/4 evaluate"):
        assert step in out
    assert re.search(r"report rpt-[0-9a-f]{16}: (pass|FAIL|warn)", out)
    assert "tstr_roc_auc" in out and "NAIVE BASELINE" in out and "REAL HOLDOUT" in out
    assert re.search(r"web page:\s+http://127\.0\.0\.1:\d+/", out)
    synthetic = (tmp_path / "var" / "demo" / "synthetic.csv").read_text().splitlines()
    assert len(synthetic) == 1501
    assert "<svg" in (tmp_path / "var" / "demo" / "report.html").read_text()


@pytest.mark.slow
def test_evaluate_report_html_and_list(tiny_model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import shutil

    store = tmp_path / "var" / "store"
    shutil.copytree(tiny_model.store_dir, store)
    platform = LocalPlatform(tmp_path / "var", ports="free").start()
    try:
        base = [*SYNTH, "--trainer", platform.address("trainer"), "--evaluator", platform.address("evaluator")]
        run = subprocess.run(
            [*base, "evaluate", tiny_model.model_id, "--target", "income", "--seed", "2", "--json"],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert run.returncode == 0, run.stderr
        import json

        report = json.loads(run.stdout)
        assert report["id"].startswith("rpt-") and report["target_column"] == "income"
        html_path = tmp_path / "report.html"
        shown = subprocess.run(
            [*base, "report", report["id"], "--html", str(html_path)], capture_output=True, text=True, timeout=60
        )
        assert shown.returncode == 0, shown.stderr
        assert "dcr_share" in shown.stdout and "VERDICT" in shown.stdout
        page = html_path.read_text()
        # Self-contained: charts inline, nothing fetched, nothing run.
        assert page.count("<svg") >= 3
        assert not re.search(r"(src|href)\s*=", page) and "<script" not in page
        listed = subprocess.run([*base, "reports", "list"], capture_output=True, text=True, timeout=60)
        assert report["id"] in listed.stdout

        # An evaluation is a job: started detached, then watched, shown, listed.
        def synth(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([*base, *args], capture_output=True, text=True, timeout=600)

        detached = synth("evaluate", tiny_model.model_id, "--rows", "300", "--seed", "4", "--detach", "--json")
        assert detached.returncode == 0, detached.stderr
        job = json.loads(detached.stdout)
        assert job["id"].startswith("eval-") and int(job["seed"]) == 4  # int64 is a string in JSON
        watched = synth("evaluations", "watch", job["id"], "--json")
        assert watched.returncode == 0, watched.stderr
        events = [json.loads(line) for line in watched.stdout.splitlines()]
        assert "queued" in events[0] and "succeeded" in events[-1]
        shown = synth("evaluations", "show", job["id"])
        assert "succeeded" in shown.stdout and events[-1]["succeeded"]["report_id"] in shown.stdout
        assert job["id"] in synth("evaluations", "list").stdout
        again = synth("evaluations", "watch", job["id"])  # re-attached after the end: the report
        assert again.returncode == 0 and events[-1]["succeeded"]["report_id"] in again.stdout
        refused = synth("evaluations", "cancel", job["id"])
        assert refused.returncode == 1 and "already ended" in refused.stderr
    finally:
        platform.stop()
