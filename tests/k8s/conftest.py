"""Fixtures for the Kubernetes tests: every overlay rendered once per run.

Everything here runs without a cluster; only ``kubectl`` (for ``kubectl
kustomize``) is needed, and the tests skip, saying so, where it is missing."""

from __future__ import annotations

import pytest

from tests.k8s.manifests import OVERLAYS, Objects, kubectl, render


@pytest.fixture(scope="session")
def rendered() -> dict[str, Objects]:
    if kubectl() is None:
        pytest.skip("kubectl is not installed: the manifests cannot be rendered (kubectl kustomize)")
    return {overlay: Objects(render(overlay)) for overlay in OVERLAYS}


@pytest.fixture(params=OVERLAYS)
def objects(request: pytest.FixtureRequest, rendered: dict[str, Objects]) -> Objects:
    """Each overlay in turn."""
    return rendered[request.param]
