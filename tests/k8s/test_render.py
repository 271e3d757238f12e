"""The overlays render, every object passes the Kubernetes schemas, and the
workloads are hardened as docs/DEPLOY.md promises (the Pod Security
"restricted" profile and more). No cluster needed."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest

from tests.k8s.manifests import EXTERNAL_SECRETS, NAMESPACE, SCHEMA_VERSIONS, Objects, selector_matches

STATELESS = ("sampler", "evaluator", "gateway")


def test_every_overlay_renders_the_four_services(objects: Objects) -> None:
    assert sorted(d["metadata"]["name"] for d in objects.deployments) == ["evaluator", "gateway", "sampler", "trainer"]
    for doc in objects.docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == NAMESPACE, doc["metadata"]
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "synth", doc["metadata"]


@pytest.mark.parametrize("version", SCHEMA_VERSIONS)
def test_every_object_validates_against_the_kubernetes_schema(objects: Objects, version: str) -> None:
    """Strict: unknown fields (a typo such as ``readinesProbe``) fail too."""
    problems = []
    for doc in objects.docs:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as err:
            problems.append(f"{doc['kind']}/{doc['metadata']['name']}: {err.message} at {list(err.path)}")
    assert not problems, "\n".join(problems)


def test_pods_meet_the_restricted_pod_security_profile(objects: Objects) -> None:
    assert objects.get("Namespace", NAMESPACE)["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == (
        "restricted"
    )
    for workload in objects.workloads():
        pod, container = workload.pod, workload.container
        where = workload.name
        for key in ("hostNetwork", "hostPID", "hostIPC"):
            assert not pod.get(key), f"{where}: {key}"
        assert not any("hostPath" in v for v in pod.get("volumes", [])), f"{where}: hostPath volume"
        pod_sc, sc = pod["securityContext"], container["securityContext"]
        assert pod_sc["runAsNonRoot"] is True and pod_sc["runAsUser"] != 0 and pod_sc["runAsGroup"] != 0, where
        assert pod_sc["seccompProfile"]["type"] == "RuntimeDefault", where
        assert sc["allowPrivilegeEscalation"] is False, where
        assert sc["readOnlyRootFilesystem"] is True, where
        assert sc["capabilities"] == {"drop": ["ALL"]}, where
        assert not sc.get("privileged"), where
        assert sc.get("seccompProfile", {"type": "RuntimeDefault"})["type"] == "RuntimeDefault", where


def test_each_service_has_its_own_service_account_without_a_token(objects: Objects) -> None:
    for workload in objects.workloads():
        pod = workload.pod
        assert pod["serviceAccountName"] == workload.name
        assert pod["automountServiceAccountToken"] is False
        account = objects.get("ServiceAccount", workload.name)
        assert account["automountServiceAccountToken"] is False
    # And nothing grants them any API access.
    assert not objects.of("Role") and not objects.of("RoleBinding") and not objects.of("ClusterRoleBinding")


def test_requests_limits_and_a_writable_tmp(objects: Objects) -> None:
    for workload in objects.workloads():
        resources = workload.container["resources"]
        for part in ("requests", "limits"):
            for kind in ("cpu", "memory", "ephemeral-storage"):
                assert kind in resources[part], f"{workload.name}: no {part}.{kind}"
        found = workload.mount_for("/tmp")
        assert found is not None, f"{workload.name}: no /tmp volume under a read-only root"
        mount, volume = found
        assert mount["mountPath"] == "/tmp" and "emptyDir" in volume and volume["emptyDir"]["sizeLimit"]
        mounted = {m["name"] for m in workload.container.get("volumeMounts", [])}
        assert mounted == {v["name"] for v in workload.pod.get("volumes", [])}, f"{workload.name}: unused volumes"


def _bytes(quantity: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    return int(quantity[:-2]) * units[quantity[-2:]] if quantity[-2:] in units else int(quantity)


def test_the_sampler_memory_limit_holds_its_cache_and_generation_budget(objects: Objects) -> None:
    """Memory is bounded under concurrency only if the limit covers what the
    sampler may hold: the idle process, the model cache and the generation
    budget concurrent streams reserve from (bench_load: 20 x 200k rows)."""
    sampler = next(w for w in objects.workloads() if w.name == "sampler")
    env = {e["name"]: e.get("value") for e in sampler.container["env"]}
    cache = int(env["SYNTH_SAMPLER_MODEL_CACHE_BYTES"])
    generation = int(env["SYNTH_SAMPLER_GENERATION_MEMORY_MB"]) * 2**20
    idle = 512 * 2**20
    limit = _bytes(sampler.container["resources"]["limits"]["memory"])
    assert idle + cache + generation <= limit


def test_probes_are_native_grpc_probes(objects: Objects) -> None:
    for workload in objects.workloads():
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            spec = workload.container[probe]
            assert set(spec) & {"grpc", "httpGet", "exec", "tcpSocket"} == {"grpc"}, f"{workload.name} {probe}"


def test_trainer_is_one_replica_recreated(objects: Objects) -> None:
    trainer = objects.get("Deployment", "trainer")
    assert trainer["spec"]["replicas"] == 1
    assert trainer["spec"]["strategy"] == {"type": "Recreate"}
    assert not [h for h in objects.of("HorizontalPodAutoscaler") if h["spec"]["scaleTargetRef"]["name"] == "trainer"]


def test_store_is_one_claim_shared_by_the_services_that_need_it(objects: Objects, request: Any) -> None:
    claims = objects.of("PersistentVolumeClaim")
    assert [c["metadata"]["name"] for c in claims] == ["synth-store"]
    modes = claims[0]["spec"]["accessModes"]
    overlay = request.node.callspec.params["objects"]
    # Several nodes need ReadWriteMany; a one-node laptop cluster does with ReadWriteOnce.
    assert modes == (["ReadWriteOnce"] if overlay == "local" else ["ReadWriteMany"])
    users = sorted(
        w.name
        for w in objects.workloads()
        if any(v.get("persistentVolumeClaim", {}).get("claimName") == "synth-store" for v in w.pod.get("volumes", []))
    )
    assert users == ["evaluator", "sampler", "trainer"]


def test_backend_services_are_headless_and_the_gateway_is_not(objects: Objects) -> None:
    for service in objects.of("Service"):
        name = service["metadata"]["name"]
        headless = service["spec"].get("clusterIP") == "None"
        assert headless == (name != "gateway"), name
        selected = [
            w.name
            for w in objects.workloads()
            if selector_matches({"matchLabels": service["spec"]["selector"]}, w.labels)
        ]
        assert selected == [name], f"Service {name} selects {selected}"


def test_secrets_are_generated_placeholders_or_documented_external(objects: Objects) -> None:
    rendered = {s["metadata"]["name"] for s in objects.of("Secret")}
    assert rendered == {"synth-api-keys"}
    keys = objects.get("Secret", "synth-api-keys")
    import base64

    text = base64.b64decode(keys["data"]["api-keys.txt"]).decode()
    assert all(line.startswith("#") or not line.strip() for line in text.splitlines()), "no real key hashes committed"
    used = set()
    for workload in objects.workloads():
        used |= {v["secret"]["secretName"] for v in workload.pod.get("volumes", []) if "secret" in v}
    for ingress in objects.of("Ingress"):
        used |= {t["secretName"] for t in ingress["spec"].get("tls", [])}
    assert used - rendered <= EXTERNAL_SECRETS, used - rendered - EXTERNAL_SECRETS


def test_network_policies_start_from_default_deny(objects: Objects) -> None:
    deny = objects.get("NetworkPolicy", "default-deny")
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


def test_local_overlay_is_small_and_cpu_only(rendered: dict[str, Objects]) -> None:
    local = rendered["local"]
    assert all(d["spec"]["replicas"] == 1 for d in local.deployments)
    trainer = local.workload("trainer")
    assert "nvidia.com/gpu" not in trainer.container["resources"]["limits"]
    assert not trainer.pod.get("tolerations") and not trainer.pod.get("nodeSelector")
    assert local.get("PersistentVolumeClaim", "synth-store")["spec"]["resources"]["requests"]["storage"] == "2Gi"
    assert not local.of("HorizontalPodAutoscaler") and not local.of("PodDisruptionBudget") and not local.of("Ingress")
    assert all("TLS" not in name for w in local.workloads() for name in w.env)


def test_production_trainer_is_on_a_gpu_node(rendered: dict[str, Objects]) -> None:
    trainer = rendered["production"].workload("trainer")
    resources = trainer.container["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == "1" == resources["requests"]["nvidia.com/gpu"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in trainer.pod["tolerations"]
    assert trainer.pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert trainer.env["SYNTH_TRAINER_DEVICE"] == "cuda"
    # Only the trainer asks for a GPU.
    others = [w for w in rendered["production"].workloads() if w.name != "trainer"]
    assert all("nvidia.com/gpu" not in w.container["resources"]["limits"] for w in others)


def test_production_scales_the_stateless_tier(rendered: dict[str, Objects]) -> None:
    prod = rendered["production"]
    hpas = {h["spec"]["scaleTargetRef"]["name"]: h for h in prod.of("HorizontalPodAutoscaler")}
    assert sorted(hpas) == ["evaluator", "sampler"]
    for name, hpa in hpas.items():
        target = prod.get("Deployment", name)
        assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
        assert "replicas" not in target["spec"], f"{name}: the HPA owns the replica count"
        assert hpa["spec"]["minReplicas"] >= 2
        # CPU utilisation needs a CPU request to be measured against.
        assert prod.workload(name).container["resources"]["requests"]["cpu"]
    assert prod.get("Deployment", "gateway")["spec"]["replicas"] >= 2
    budgets = prod.of("PodDisruptionBudget")
    protected = sorted(
        w.name for w in prod.workloads() if any(selector_matches(b["spec"]["selector"], w.labels) for b in budgets)
    )
    assert protected == sorted(STATELESS)


def test_production_has_mutual_tls_everywhere_inside(rendered: dict[str, Objects]) -> None:
    prod = rendered["production"]
    for name in ("trainer", "sampler", "evaluator"):
        settings = prod.workload(name).settings()
        assert settings.tls_cert_file and settings.tls_client_ca_file, f"{name}: not mutual TLS"
    gateway = prod.workload("gateway").settings()
    assert gateway.backend_tls_ca_file and gateway.backend_tls_cert_file  # type: ignore[attr-defined]
    evaluator = prod.workload("evaluator").settings()
    assert evaluator.sampler_tls_ca_file and evaluator.sampler_tls_cert_file  # type: ignore[attr-defined]


def test_production_ingress_reaches_only_the_gateway(rendered: dict[str, Objects]) -> None:
    prod = rendered["production"]
    ingresses = prod.of("Ingress")
    assert ingresses
    gateway_service = prod.get("Service", "gateway")
    port_names = {p["name"] for p in gateway_service["spec"]["ports"]}
    targets = set()
    for ingress in ingresses:
        assert ingress["spec"]["tls"], "TLS ends at the Ingress"
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                service = path["backend"]["service"]
                assert service["name"] == "gateway"
                assert service["port"]["name"] in port_names
                targets.add(service["port"]["name"])
    assert targets == {"http", "grpc"}
