"""Browser tests: the real services and the real gateway in-process on free
loopback ports, driven by Python Playwright in Debian's headless Chromium
(``scripts/setup.sh --browser`` installs it; Playwright's own browser download
is never used). Screenshots go to ``test-artifacts/``."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services.evaluator.app import build_server as build_evaluator
from services.evaluator.settings import EvaluatorSettings
from services.sampler.app import build_server as build_sampler
from services.sampler.settings import SamplerSettings
from services.trainer.app import build_server as build_trainer
from services.trainer.settings import TrainerSettings
from tests.integration.test_gateway_fakes import start_gateway

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
DATASETS = ROOT / "tests" / "fixtures" / "datasets"  # copies of the shared datasets
CHROMIUM = Path(os.environ.get("SYNTH_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _browser_missing() -> str:
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -r requirements-dev.txt)"
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (bash scripts/setup.sh --browser)"
    return ""


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    missing = _browser_missing()
    if not missing:
        return
    if os.environ.get("CI"):
        raise pytest.UsageError(f"browser tests cannot run in CI: {missing}")
    skip = pytest.mark.skip(reason=missing)
    for item in items:
        if "tests/e2e/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(skip)


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """trainer, sampler and evaluator (real server factories, one store) behind the gateway."""
    store = tmp_path_factory.mktemp("store")
    servers = [
        build_trainer(TrainerSettings(port=0, metrics_port=-1, store_dir=store)),
        build_sampler(SamplerSettings(port=0, metrics_port=-1, store_dir=store)),
    ]
    for server in servers:
        server.start().set_serving()
    evaluator_settings = EvaluatorSettings(port=0, metrics_port=-1, store_dir=store, sampler_address=servers[1].address)
    servers.append(build_evaluator(evaluator_settings).start())
    servers[-1].set_serving()
    gateway = start_gateway(
        trainer=servers[0].address, sampler=servers[1].address, evaluator=servers[2].address, metrics_port=-1
    )
    try:
        yield {"gateway": gateway, "url": gateway.http_url, "store": store, "trainer": servers[0].address}
    finally:
        gateway.stop(0)
        for server in servers:
            server.stop(0)


@pytest.fixture
def browser_context() -> Iterator[Any]:
    """A fresh Chromium profile per test (its own --user-data-dir)."""
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="synth-chromium-")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            profile,
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1366, "height": 820},  # a laptop screen
            accept_downloads=True,
        )
        context.set_default_timeout(30_000)  # a shared CI machine under load is slow, not broken
        try:
            yield context
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def page(browser_context: Any) -> Any:
    page = browser_context.pages[0] if browser_context.pages else browser_context.new_page()
    page.console_errors = []
    page.on("pageerror", lambda exc: page.console_errors.append(str(exc)))
    return page


def shot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
