"""`synth up` with the gateway: four processes, the gateway started last with the
backends' addresses, one front door for gRPC and HTTP, clean SIGTERM exits."""

from __future__ import annotations

import json
import urllib.request

import pytest

from synth_client import LocalPlatform, SynthClient
from tests.integration.conftest import DATASETS


@pytest.mark.slow
def test_local_platform_serves_everything_through_the_gateway(tmp_path) -> None:  # type: ignore[no-untyped-def]
    platform = LocalPlatform(tmp_path / "var", ports="free").start()
    try:
        assert [s.name for s in platform.specs][-1] == "gateway"
        # One address for every service: the gateway's.
        with SynthClient(platform.address("gateway")) as client:
            dataset = client.upload_dataset(DATASETS / "pima_diabetes.csv")
            assert [d.id for d in client.list_datasets()] == [dataset.id]
        with urllib.request.urlopen(platform.web_url + "v1/datasets", timeout=10) as response:
            assert json.loads(response.read())["datasets"][0]["id"] == dataset.id
        with urllib.request.urlopen(platform.web_url + "healthz", timeout=10) as response:
            backends = json.loads(response.read())["backends"]
        assert backends == {"trainer": "SERVING", "sampler": "SERVING", "evaluator": "SERVING"}
        with urllib.request.urlopen(platform.web_url, timeout=10) as response:
            assert b"Upload a real table" in response.read()
        log = (platform.log_dir / "gateway.log").read_text()
        assert "API key authentication OFF" in log and platform.address("trainer") in log
    finally:
        codes = platform.stop()
    assert codes["gateway"] == 0, "SIGTERM should shut the gateway down cleanly"
