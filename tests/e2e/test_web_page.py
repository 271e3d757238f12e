"""The web page in real headless Chromium, served by the real gateway.

Now: load the page, upload a real CSV through the file input and see its
schema, see a validation error next to a bad file, move around with the
keyboard, labelled controls, the API-key prompt; the training view and the
report view drawn from fake backends (live loss chart, progress, re-attach
after a reload; an evaluation job followed, re-attached after a reload, its
report or its failure shown; cards, badges and charts). The full journey (train a few epochs,
generate, download, evaluate) runs once those services answer, and skips until
then. Screenshots land in test-artifacts/."""

from __future__ import annotations

import csv
import io
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from gateway.auth import hash_key
from tests.e2e.conftest import DATASETS, shot
from tests.integration.test_gateway_fakes import (
    FAILING_EVALUATION,
    FAKE_EVALUATION,
    start_fake_backend,
    start_gateway,
)

PIMA = DATASETS / "pima_diabetes.csv"


def upload(page: Any, path: Path) -> None:
    page.set_input_files("#file-input", str(path))


def unlabelled_controls(page: Any) -> list[str]:
    return page.evaluate(
        """() => [...document.querySelectorAll('input, select, textarea, button')]
            .filter((el) => el.offsetParent !== null || el.type === 'file')
            .filter((el) => el.tagName === 'BUTTON' ? !el.textContent.trim() && !el.getAttribute('aria-label')
                         : !(el.labels && el.labels.length) && !el.getAttribute('aria-label'))
            .map((el) => el.outerHTML.slice(0, 80))"""
    )


def test_upload_schema_validation_and_keyboard(platform, page, tmp_path) -> None:  # type: ignore[no-untyped-def]
    page.goto(platform["url"])
    assert page.title().startswith("synth")
    assert page.is_visible("#step-upload") and not page.is_visible("#step-train")
    assert "MB" in page.inner_text("#max-size")
    shot(page, "01-upload-empty")

    # A real table through the file input: the schema appears.
    upload(page, PIMA)
    page.wait_for_selector("#schema:not([hidden])")
    assert "pima_diabetes.csv" in page.inner_text("#schema-title")
    rows = page.locator("#schema-table tbody tr")
    assert rows.count() == 9
    assert "continuous" in rows.nth(1).inner_text() and "Glucose" in rows.nth(1).inner_text()
    assert "768 rows" in page.inner_text("#schema-summary")
    assert page.inner_text("#upload-error") == ""
    shot(page, "02-upload-schema")

    # A bad file: the server's reason, with the row, next to the file; nothing else changes.
    bad = tmp_path / "ragged.csv"
    bad.write_text("a,b\n" + "1,2\n" * 15 + "1,2,3\n")
    upload(page, bad)
    page.wait_for_function("() => document.getElementById('upload-error').textContent.length > 0")
    message = page.inner_text("#upload-error")
    assert "ragged.csv was not stored" in message and "rows[" in message
    assert page.get_attribute("#upload-error", "role") == "alert"
    assert page.is_hidden("#schema")
    shot(page, "03-upload-validation-error")
    not_csv = tmp_path / "picture.png"
    not_csv.write_bytes(b"\x89PNG\r\n")
    upload(page, not_csv)
    page.wait_for_function("() => document.getElementById('upload-error').textContent.includes('not a CSV')")

    # Keyboard: the skip link comes first, the steps are reachable and focus their heading.
    page.goto(platform["url"] + "/#upload")
    page.reload()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"
    for _ in range(12):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.dataset && document.activeElement.dataset.step") == "train":
            break
    else:
        pytest.fail("the Train step link is not reachable with Tab")
    page.keyboard.press("Enter")
    page.wait_for_selector("#step-train:not([hidden])")
    assert page.evaluate("document.activeElement.id") == "h-train"
    assert page.get_attribute("a[data-step=train]", "aria-current") == "step"
    # The dataset just uploaded is offered for training (the list loads after the
    # reload, asynchronously), and every control has a label.
    page.wait_for_function("() => document.getElementById('train-dataset').textContent.includes('pima_diabetes.csv')")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "train-dataset"
    for step in ("upload", "train", "generate", "evaluate", "library"):
        page.goto(f"{platform['url']}/#{step}")
        page.wait_for_selector(f"#step-{step}:not([hidden])")
        assert unlabelled_controls(page) == [], step
    page.wait_for_selector("#list-datasets table")
    assert "pima_diabetes.csv" in page.inner_text("#list-datasets")
    shot(page, "04-library")
    assert page.console_errors == []


def test_openapi_page_renders_every_route(platform, page) -> None:  # type: ignore[no-untyped-def]
    from gateway.routes import ROUTES

    page.goto(platform["url"] + "/docs")
    page.wait_for_selector("#endpoints details")
    assert page.locator("#endpoints details.endpoint").count() == len(ROUTES)
    assert "| INVALID_ARGUMENT | 400 |" not in page.inner_text("#intro"), "the status table is rendered as a table"
    assert page.locator("#intro table tr").count() > 10
    page.click("#endpoints summary:has-text('/v1/datasets')")
    assert "multipart/form-data" in page.inner_text("#endpoints")
    assert "[object" not in page.inner_text("body")
    shot(page, "08-api-docs")
    assert page.console_errors == []


def test_api_key_prompt(platform, page) -> None:  # type: ignore[no-untyped-def]
    key = "sk-browser-test-key"
    gw = start_gateway(trainer=platform["trainer"], api_key_hashes=(hash_key(key),), metrics_port=-1)
    try:
        page.goto(gw.http_url)
        page.wait_for_selector("#auth-form:not([hidden])")
        shot(page, "05-api-key-prompt")
        page.fill("#api-key", "wrong")
        page.press("#api-key", "Enter")
        page.goto(gw.http_url + "/#library")
        page.wait_for_selector("#auth-form:not([hidden])")
        # The form never hid: wait for the refusal's message rather than read it at once.
        page.wait_for_function(
            "() => /not accepted|invalid or revoked API key/.test(document.getElementById('auth-message').textContent)"
        )
        page.fill("#api-key", key)
        page.click("#auth-form button")
        page.wait_for_selector("#auth-form", state="hidden")
        # The lists reload with the key: the earlier "missing/invalid API key" text goes away.
        page.wait_for_function(
            "() => { const t = document.getElementById('list-datasets').textContent;"
            " return t.length > 0 && !t.includes('API key'); }"
        )
    finally:
        gw.stop(0)


def test_training_view_and_report_view_against_fake_backends(page) -> None:  # type: ignore[no-untyped-def]
    fake = start_fake_backend(epochs=20, delay=0.15)
    gw = start_gateway(trainer=fake.address, sampler=fake.address, evaluator=fake.address, metrics_port=-1)
    try:
        job = "job-0123456789abcdef"
        page.goto(f"{gw.http_url}/#train/{job}")
        page.wait_for_function("() => document.getElementById('train-status').textContent.startsWith('Epoch')")
        page.wait_for_function("() => document.querySelectorAll('#loss-chart polyline').length === 2")
        # Reload mid-way: the page re-attaches after the last event it saw, keeping the chart.
        saved = page.evaluate("JSON.parse(localStorage.getItem('synth.watch'))")
        assert saved["job_id"] == job and saved["last"] >= 3 and not saved["done"]
        page.reload()
        page.wait_for_function(
            "() => document.getElementById('train-status').textContent.startsWith('Finished')", timeout=20_000
        )
        assert fake.recorder.after_sequence[0] == 0 and fake.recorder.after_sequence[-1] >= saved["last"]
        assert page.evaluate("document.getElementById('train-progress').value") == 1
        points = page.evaluate("JSON.parse(localStorage.getItem('synth.watch')).points.map((p) => p[0])")
        assert points == list(range(1, 21)), "every epoch once: nothing lost or repeated across the reload"
        assert "mdl-0123456789abcdef" in page.inner_text("#train-status")
        shot(page, "06-training-finished")

        page.goto(f"{gw.http_url}/#library")
        page.wait_for_selector("#list-reports button")
        page.click("#list-reports button")
        page.wait_for_selector("#report:not([hidden])")
        cards = page.locator("#report .card")
        assert cards.count() == 3
        text = page.inner_text("#report")
        for expected in ("Utility", "Fidelity", "Privacy", "tstr_roc_auc", "naive baseline 0.55", "real holdout 0.83"):
            assert expected in text, expected
        assert "exact copies" in text  # the plain sentence
        assert "[object" not in text
        assert page.locator("#report .badge.fail").count() >= 2  # the metric and its card
        assert page.locator("#report .badge.warn").count() >= 1
        assert page.locator("#hist-chart rect").count() == 12  # 4 bins × real, synthetic, baseline
        page.select_option("#hist-column", label="Outcome")
        assert page.locator("#hist-chart rect").count() == 6
        assert page.locator("#report .charts-row").first.locator("svg").count() == 3  # heatmaps
        assert page.locator("#report .charts-row").nth(1).locator("svg").count() == 2  # DCR and NNDR
        shot(page, "07-report")
        assert page.console_errors == []
    finally:
        gw.stop(0)
        fake.stop()


def test_an_evaluation_job_is_followed_and_reattached_after_a_reload(page) -> None:  # type: ignore[no-untyped-def]
    fake = start_fake_backend(delay=0.2, evaluation_steps=15)
    gw = start_gateway(trainer=fake.address, sampler=fake.address, evaluator=fake.address, metrics_port=-1)
    try:
        page.goto(f"{gw.http_url}/#evaluate/{FAKE_EVALUATION}")
        page.wait_for_selector("#step-evaluate:not([hidden])")
        page.wait_for_function("() => document.getElementById('eval-status').textContent.startsWith('step 3')")
        assert page.is_enabled("#eval-cancel")
        # Reload mid-way: the page re-attaches after the last event it saw.
        saved = page.evaluate("JSON.parse(localStorage.getItem('synth.evaluation'))")
        assert saved["job_id"] == FAKE_EVALUATION and saved["last"] >= 5 and not saved["done"]
        page.goto(gw.http_url + "/#library")  # a reload elsewhere re-attaches too, from what was saved
        page.reload()
        page.wait_for_function(
            "() => document.getElementById('eval-status').textContent.includes('rpt-0123456789abcdef ready')",
            timeout=20_000,
        )
        after = fake.recorder.evaluation_after
        assert after[0] == 0 and len(after) >= 2 and after[-1] >= saved["last"], after
        assert page.evaluate("JSON.parse(localStorage.getItem('synth.evaluation')).done")
        assert page.evaluate("document.getElementById('eval-progress').value") == 1
        page.goto(gw.http_url + "/#evaluate")
        page.wait_for_selector("#report:not([hidden])")
        assert page.locator("#report .card").count() == 3 and "tstr_roc_auc" in page.inner_text("#report")
        assert page.is_disabled("#eval-cancel")
        shot(page, "09-evaluation-reattached")

        # A failed job: its google.rpc.Status message is shown as an error.
        page.goto(f"{gw.http_url}/#evaluate/{FAILING_EVALUATION}")
        page.wait_for_function("() => document.getElementById('eval-error').textContent.includes('not found')")
        assert "mdl-0123456789abcdef" in page.inner_text("#eval-error")
        assert page.inner_text("#eval-status") == "Failed."
        page.goto(gw.http_url + "/#library")
        page.wait_for_selector("#list-evaluations table")
        assert FAKE_EVALUATION in page.inner_text("#list-evaluations")
        assert page.console_errors == []
    finally:
        gw.stop(0)
        fake.stop()


def test_full_journey_train_generate_download_evaluate(platform, page, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Upload, train (reloading the page mid-way), generate with conditions and
    download, then evaluate: the whole flow a new user follows."""
    url = platform["url"]
    page.goto(url)
    upload(page, PIMA)
    page.wait_for_selector("#schema:not([hidden])")

    # Train a few epochs, reloading the page while it runs: it re-attaches.
    page.click("#to-train")
    page.wait_for_selector("#step-train:not([hidden])")
    # automatic engine choice, and a time budget proposed from the table's size (Pima is small: quick)
    assert page.input_value("#train-synthesizer") == "auto" and page.input_value("#train-length") == "quick"
    estimate = page.inner_text("#train-estimate")
    assert page.locator("#train-epochs").is_disabled() and "1 minute" in estimate and "768 rows" in estimate
    page.select_option("#train-length", "epochs")
    page.fill("#train-epochs", "3")
    page.fill("#train-batch", "100")
    page.fill("#train-seed", "7")
    page.select_option("#train-target", "Outcome")
    page.click("#train-columns summary")  # the schema, with why each kind was inferred; leave one column out
    page.select_option('.learn-as[data-column="SkinThickness"]', "exclude")
    assert "distinct values" in page.inner_text("#train-columns-table")
    page.click("#train-start")
    page.wait_for_selector("#train-live:not([hidden])")
    page.wait_for_function(
        "() => (JSON.parse(localStorage.getItem('synth.watch') || '{}').job_id || '').startsWith('job-')"
    )
    page.reload()
    page.wait_for_function(
        "() => /^(Finished|Failed|Cancelled)/.test(document.getElementById('train-status').textContent)",
        timeout=240_000,
    )
    status = page.inner_text("#train-status")
    assert status.startswith("Finished"), status
    assert page.locator("#loss-chart polyline").count() == 2
    epochs = page.evaluate("() => JSON.parse(localStorage.getItem('synth.watch')).points.map((p) => p[0])")
    assert epochs == list(range(1, len(epochs) + 1)) and len(epochs) in (1, 3), "every epoch once across the reload"
    assert page.inner_text("#train-choice").startswith("Chose "), "the automatic choice is shown"
    shot(page, "10-journey-trained")

    # Generate with a condition, and download.
    page.goto(url + "/#generate")
    page.wait_for_function("() => document.getElementById('gen-model').value.startsWith('mdl-')")
    page.fill("#gen-rows", "200")
    page.fill("#gen-seed", "11")
    page.click("#add-condition")
    page.wait_for_function("() => document.querySelectorAll('.cond-column option').length > 0")
    page.select_option(".cond-column", "Outcome")
    page.fill(".condition input", "1")
    page.click("#add-condition")  # and a comparison of two columns of each row
    second = page.locator(".condition").nth(1)
    second.locator(".cond-column").select_option("Glucose")
    second.locator(".cond-op").select_option(label="is more than column")
    assert second.locator(".cond-other").is_visible() and not second.locator("input").first.is_visible()
    second.locator(".cond-other").select_option("BloodPressure")
    with page.expect_download(timeout=120_000) as download_info:
        page.click("#gen-start")
    download = download_info.value
    assert not page.inner_text("#gen-error")
    saved = tmp_path / "synthetic.csv"
    download.save_as(str(saved))
    rows = list(csv.DictReader(io.StringIO(saved.read_text())))
    assert len(rows) == 200 and "Glucose" in rows[0]
    assert {r["SkinThickness"] for r in rows} == {""}, "the excluded column is left empty"
    assert {r["Outcome"] for r in rows} == {"1"}, "every row satisfies the condition"
    assert all(float(r["Glucose"]) > float(r["BloodPressure"]) for r in rows), "and the comparison"
    page.wait_for_selector("#gen-preview:not([hidden])")
    assert "seed 11" in page.inner_text("#gen-status")
    shot(page, "11-journey-generated")

    # Evaluate the model against the real table.
    page.goto(url + "/#evaluate")
    page.wait_for_function("() => document.getElementById('eval-model').value.startsWith('mdl-')")
    page.select_option("#eval-target", "Outcome")
    page.fill("#eval-seed", "3")
    page.click("#eval-start")
    # An evaluation job: reloading the page while it runs re-attaches to it.
    page.wait_for_function(
        "() => (JSON.parse(localStorage.getItem('synth.evaluation') || '{}').job_id || '').startsWith('eval-')"
    )
    page.reload()
    page.wait_for_function(
        "() => !document.getElementById('report').hidden || document.getElementById('eval-error').textContent",
        timeout=300_000,
    )
    assert page.inner_text("#eval-status").endswith("ready."), page.inner_text("#eval-status")
    assert page.inner_text("#eval-error") == "", page.inner_text("#eval-error")
    assert page.locator("#report .card").count() == 3
    assert "chosen automatically" in page.inner_text("#report-engine"), "the report says which engine and why"
    assert page.locator("#report .badge").count() >= 4
    assert page.locator("#report svg").count() >= 3
    shot(page, "12-journey-report")
    reports = json.loads(urllib.request.urlopen(url + "/v1/reports", timeout=10).read())["reports"]
    assert reports
    assert page.console_errors == []
