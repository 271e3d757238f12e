"""Helpers for the manifest tests: render an overlay with ``kubectl kustomize``,
index the objects, map each Deployment to the code it runs, and evaluate
NetworkPolicies (a small, explicit model of the Kubernetes semantics)."""

from __future__ import annotations

import dataclasses
import importlib
import ipaddress
import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.common.settings import ServerSettings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
OVERLAYS = ("local", "production")
NAMESPACE = "synth"
# Secrets the manifests use but do not create: made by k8s/scripts/make-certs.sh
# or cert-manager (service certificates) and by the cluster's owner (Ingress
# TLS, the artifact signing key).
_SERVICE_TLS = ("tls.crt", "tls.key", "ca.crt")  # make-certs.sh's (and cert-manager's) layout
EXTERNAL_SECRET_KEYS: dict[str, tuple[str, ...]] = {
    "synth-artifact-key": ("artifact.key",),  # docs/DEPLOY.md, components/signing
    "synth-trainer-tls": _SERVICE_TLS,
    "synth-sampler-tls": _SERVICE_TLS,
    "synth-evaluator-tls": _SERVICE_TLS,
    "synth-gateway-tls": _SERVICE_TLS,
    "synth-ingress-tls": ("tls.crt", "tls.key"),
}
EXTERNAL_SECRETS = set(EXTERNAL_SECRET_KEYS)
# Kubernetes versions whose schemas every object must pass (oldest and newest supported).
SCHEMA_VERSIONS = ("1.30.0", "1.37.0")


def kubectl() -> str | None:
    return shutil.which("kubectl")


def render(overlay: str | Path) -> list[dict[str, Any]]:
    """The objects ``kubectl kustomize`` makes of an overlay (or any kustomization folder)."""
    binary = kubectl()
    if binary is None:
        raise RuntimeError("kubectl is not installed")
    folder = overlay if isinstance(overlay, Path) else K8S / "overlays" / overlay
    done = subprocess.run([binary, "kustomize", str(folder)], capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise AssertionError(f"kubectl kustomize {folder} failed:\n{done.stderr}")
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


class Objects:
    """Rendered objects, looked up by kind and name."""

    def __init__(self, docs: list[dict[str, Any]]) -> None:
        self.docs = docs

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        found = [d for d in self.of(kind) if d["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
        return found[0]

    def find(self, kind: str, name: str) -> dict[str, Any] | None:
        return next((d for d in self.of(kind) if d["metadata"]["name"] == name), None)

    @property
    def deployments(self) -> list[dict[str, Any]]:
        return self.of("Deployment")

    def workloads(self) -> Iterator[Workload]:
        for deployment in self.deployments:
            for container in deployment["spec"]["template"]["spec"]["containers"]:
                yield Workload(deployment, container)

    def workload(self, name: str) -> Workload:
        return next(w for w in self.workloads() if w.name == name)


@dataclass(frozen=True)
class CodeTarget:
    """What a container's command runs: module, settings class and env prefix."""

    module: str
    settings_cls: type[ServerSettings]
    prefix: str


def code_target(command: list[str]) -> CodeTarget:
    """``["python", "-m", "services.trainer"]`` -> the trainer's settings."""
    assert command[:2] == ["python", "-m"] and len(command) == 3, f"unexpected command {command}"
    module = command[2]
    main = ROOT / Path(*module.split(".")) / "__main__.py"
    assert main.is_file(), f"{module} has no __main__.py"
    settings_module = importlib.import_module(f"{module}.settings")
    prefix = settings_module.ENV_PREFIX
    classes = [
        obj
        for obj in vars(settings_module).values()
        if isinstance(obj, type)
        and issubclass(obj, ServerSettings)
        and obj is not ServerSettings
        and obj.__module__ == settings_module.__name__
    ]
    assert len(classes) == 1, f"{module}.settings should define one settings class, found {classes}"
    return CodeTarget(module, classes[0], prefix)


@dataclass
class Workload:
    deployment: dict[str, Any]
    container: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.deployment["metadata"]["name"])

    @property
    def pod(self) -> dict[str, Any]:
        return self.deployment["spec"]["template"]["spec"]

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.deployment["spec"]["template"]["metadata"]["labels"])

    @property
    def command(self) -> list[str]:
        return [*self.container.get("command", []), *self.container.get("args", [])]

    @property
    def target(self) -> CodeTarget:
        return code_target(self.command)

    @property
    def env(self) -> dict[str, str]:
        out = {}
        for item in self.container.get("env", []):
            assert "value" in item, f"{self.name}: env {item['name']} must be a plain value (got {item})"
            out[item["name"]] = str(item["value"])
        assert not self.container.get("envFrom"), f"{self.name}: envFrom hides variable names from review"
        return out

    def settings(self) -> ServerSettings:
        from services.common.settings import from_env

        target = self.target
        return from_env(target.settings_cls, target.prefix, self.env)

    @property
    def ports(self) -> dict[str, int]:
        return {p["name"]: int(p["containerPort"]) for p in self.container.get("ports", [])}

    def volume(self, name: str) -> dict[str, Any]:
        return next(v for v in self.pod.get("volumes", []) if v["name"] == name)

    def mount_for(self, path: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """(volumeMount, volume) holding ``path``, the deepest mount first."""
        mounts = sorted(self.container.get("volumeMounts", []), key=lambda m: -len(m["mountPath"]))
        for mount in mounts:
            root = mount["mountPath"].rstrip("/")
            if path == root or path.startswith(root + "/"):
                return mount, self.volume(mount["name"])
        return None


def settings_fields(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


# ---- label selectors ---------------------------------------------------------------


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A LabelSelector (matchLabels and matchExpressions); empty selects all."""
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


# ---- NetworkPolicy evaluation ------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """One end of a connection: a pod (labels, its namespace's labels, named
    container ports) or an address outside the cluster (``ip``)."""

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    namespace: str = NAMESPACE
    namespace_labels: Mapping[str, str] = field(default_factory=dict)
    ports: Mapping[str, int] = field(default_factory=dict)
    ip: str = ""

    @property
    def is_pod(self) -> bool:
        return not self.ip

    @staticmethod
    def pod(name: str, labels: Mapping[str, str], namespace: str, ports: Mapping[str, int] | None = None) -> Endpoint:
        return Endpoint(
            name,
            dict(labels),
            namespace,
            {"kubernetes.io/metadata.name": namespace},
            dict(ports or {}),
        )


def _peer_matches(peer: Mapping[str, Any], policy_namespace: str, other: Endpoint) -> bool:
    if "ipBlock" in peer:
        if other.is_pod:  # pod addresses in ipBlocks are implementation-defined; we use none
            return False
        block = peer["ipBlock"]
        address = ipaddress.ip_address(other.ip)
        if address not in ipaddress.ip_network(block["cidr"]):
            return False
        return not any(address in ipaddress.ip_network(e) for e in block.get("except") or [])
    if not other.is_pod:
        return False
    if "namespaceSelector" in peer:
        if not selector_matches(peer["namespaceSelector"], other.namespace_labels):
            return False
    elif other.namespace != policy_namespace:
        return False
    return selector_matches(peer.get("podSelector"), other.labels)


def _port_matches(rule_ports: list[Mapping[str, Any]] | None, target: Endpoint, port: int, protocol: str) -> bool:
    if not rule_ports:
        return True
    for item in rule_ports:
        if item.get("protocol", "TCP") != protocol:
            continue
        wanted = item.get("port")
        if wanted is None:
            return True
        if isinstance(wanted, str):
            # A named port: the destination pod's container port of that name.
            if target.ports.get(wanted) == port:
                return True
            continue
        if int(wanted) <= port <= int(item.get("endPort", wanted)):
            return True
    return False


def allowed(
    policies: list[dict[str, Any]], source: Endpoint, target: Endpoint, port: int, protocol: str = "TCP"
) -> bool:
    """Whether ``source`` may open a connection to ``target``:``port``: the
    target's ingress and the source's egress must both allow it."""
    return _direction_allows(policies, "Ingress", target, source, port, protocol, target) and _direction_allows(
        policies, "Egress", source, target, port, protocol, target
    )


def _direction_allows(
    policies: list[dict[str, Any]],
    kind: str,
    subject: Endpoint,
    other: Endpoint,
    port: int,
    protocol: str,
    destination: Endpoint,
) -> bool:
    if not subject.is_pod:
        return True  # outside the cluster: no policy applies
    selecting = [
        p
        for p in policies
        if p["metadata"].get("namespace", NAMESPACE) == subject.namespace
        and selector_matches(p["spec"].get("podSelector"), subject.labels)
        and kind in _policy_types(p)
    ]
    if not selecting:
        return True
    key, peers_key = ("ingress", "from") if kind == "Ingress" else ("egress", "to")
    for policy in selecting:
        namespace = policy["metadata"].get("namespace", NAMESPACE)
        for rule in policy["spec"].get(key) or []:
            peers = rule.get(peers_key)
            if peers and not any(_peer_matches(peer, namespace, other) for peer in peers):
                continue
            if _port_matches(rule.get("ports"), destination, port, protocol):
                return True
    return False


def _policy_types(policy: Mapping[str, Any]) -> list[str]:
    spec = policy["spec"]
    if "policyTypes" in spec:
        return list(spec["policyTypes"])
    return ["Ingress", "Egress"] if "egress" in spec else ["Ingress"]


# ---- certificates ---------------------------------------------------------------


def make_certs(out: Path, extra_sans: tuple[str, ...] = (), namespace: str = NAMESPACE) -> Path:
    """Certificates from the shipped k8s/scripts/make-certs.sh (openssl): a CA in
    ``out`` and ``out/<service>/{tls.crt,tls.key,ca.crt}``."""
    for tool in ("bash", "openssl"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed: k8s/scripts/make-certs.sh cannot make test certificates")
    env = {"PATH": os.environ.get("PATH", ""), "EXTRA_SANS": ",".join(extra_sans), "DAYS": "2"}
    done = subprocess.run(
        ["bash", str(K8S / "scripts" / "make-certs.sh"), str(out), namespace],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return out
