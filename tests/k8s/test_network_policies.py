"""The NetworkPolicies, evaluated: every (source, pod, port) combination is
allowed exactly when the platform needs it (tests/k8s/manifests.py models the
Kubernetes semantics: ingress of the target and egress of the source)."""

from __future__ import annotations

from services.common.settings import BackendSettings, check_bind
from tests.k8s.manifests import NAMESPACE, Endpoint, Objects, allowed

OUTSIDE = Endpoint("the internet", ip="203.0.113.7")
PROMETHEUS = Endpoint.pod("prometheus", {"app.kubernetes.io/name": "prometheus"}, "monitoring")
OTHER_TEAM = Endpoint.pod("another team's pod", {"app": "web"}, "shop")
KUBE_DNS = Endpoint.pod("kube-dns", {"k8s-app": "kube-dns"}, "kube-system", {"dns": 53, "dns-tcp": 53})
# A pod someone else starts in our namespace (kubectl run, a debug pod) with no
# synth labels: default-deny covers its egress too, so it reaches nothing.
STRANGER = Endpoint.pod("stranger", {"app": "debug"}, NAMESPACE)


def _expected(source: str, target: str, port_name: str) -> bool:
    if port_name == "metrics":
        return source == "prometheus"
    if target == "gateway" and port_name in ("http", "grpc"):
        # The front door, from outside the namespace: the Ingress controller, a
        # LoadBalancer, port-forward (the kubelet). Our own pods never call it.
        return source in ("outside", "prometheus", "other-namespace")
    if port_name == "grpc":
        return (source, target) in {
            ("gateway", "trainer"),
            ("gateway", "sampler"),
            ("gateway", "evaluator"),
            ("evaluator", "sampler"),
        }
    return False  # health ports: only the kubelet, from the pod's own node (always allowed)


def test_only_the_needed_flows_are_allowed(objects: Objects) -> None:
    policies = objects.of("NetworkPolicy")
    pods = {w.name: Endpoint.pod(w.name, w.labels, NAMESPACE, w.ports) for w in objects.workloads()}
    sources = {
        **pods,
        "outside": OUTSIDE,
        "prometheus": PROMETHEUS,
        "other-namespace": OTHER_TEAM,
        "stranger": STRANGER,
    }
    wrong = []
    for source_name, source in sources.items():
        for target_name, target in pods.items():
            for port_name, port in target.ports.items():
                want = _expected(source_name, target_name, port_name)
                got = allowed(policies, source, target, port)
                if got != want:
                    wrong.append(f"{source_name} -> {target_name}:{port} ({port_name}): allowed={got}, want {want}")
    assert not wrong, "\n".join(wrong)


def test_pods_resolve_names_and_reach_nothing_else_outside(objects: Objects) -> None:
    policies = objects.of("NetworkPolicy")
    for workload in objects.workloads():
        pod = Endpoint.pod(workload.name, workload.labels, NAMESPACE, workload.ports)
        assert allowed(policies, pod, KUBE_DNS, 53, "UDP") and allowed(policies, pod, KUBE_DNS, 53, "TCP")
        # No egress to the internet (models and datasets never leave; nothing is downloaded).
        internet = Endpoint("a web server", ip="198.51.100.1")
        assert not allowed(policies, pod, internet, 443), workload.name
        assert not allowed(policies, pod, OTHER_TEAM, 8080), workload.name


def test_every_selector_in_a_policy_selects_a_workload(objects: Objects) -> None:
    """A label typo in a policy would silently deny (or allow) nothing."""
    labels = [w.labels for w in objects.workloads()]
    for policy in objects.of("NetworkPolicy"):
        selectors = [policy["spec"]["podSelector"]]
        for rule in [*policy["spec"].get("ingress", []), *policy["spec"].get("egress", [])]:
            for peer in rule.get("from", []) + rule.get("to", []):
                if "podSelector" in peer and "namespaceSelector" not in peer:
                    selectors.append(peer["podSelector"])
        for selector in selectors:
            match = selector.get("matchLabels", {})
            assert any(all(lab.get(k) == v for k, v in match.items()) for lab in labels), (
                f"NetworkPolicy {policy['metadata']['name']}: {selector} selects no pod"
            )


def test_backends_pass_their_bind_check_and_plaintext_only_behind_a_policy(objects: Objects) -> None:
    """A backend on the pod's address refuses plaintext unless ALLOW_INSECURE_BIND is
    set (``check_bind``, what it checks at start). The manifests set it only where
    the NetworkPolicies admit nothing but its real callers to the gRPC port; with
    mutual TLS (production) it is off."""
    policies = objects.of("NetworkPolicy")
    pods = {w.name: Endpoint.pod(w.name, w.labels, NAMESPACE, w.ports) for w in objects.workloads()}
    sources = {
        **pods,
        "outside": OUTSIDE,
        "prometheus": PROMETHEUS,
        "other-namespace": OTHER_TEAM,
        "stranger": STRANGER,
    }
    callers = {"trainer": {"gateway"}, "sampler": {"gateway", "evaluator"}, "evaluator": {"gateway"}}
    for name, expected in callers.items():
        workload = objects.workload(name)
        settings = workload.settings()
        assert isinstance(settings, BackendSettings), name
        warning = check_bind(settings, workload.target.prefix)  # raises where the service would refuse to start
        mutual_tls = bool(settings.tls_cert_file and settings.tls_client_ca_file)
        assert settings.allow_insecure_bind != mutual_tls, f"{name}: the opt-in is for plaintext only"
        assert bool(warning) == settings.allow_insecure_bind, name
        if settings.allow_insecure_bind:
            grpc_port = workload.ports["grpc"]
            admitted = {s for s, source in sources.items() if allowed(policies, source, pods[name], grpc_port)}
            assert admitted == expected, f"{name}: plaintext gRPC reachable from {sorted(admitted)}"
    if objects.workload("gateway").settings().backend_tls_cert_file:  # type: ignore[attr-defined]
        assert not any(objects.workload(n).settings().allow_insecure_bind for n in callers)  # type: ignore[attr-defined]
