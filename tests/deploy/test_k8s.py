"""deploy/k8s: every built-in resource validates (strictly) against the Kubernetes JSON
schemas shipped by the kubernetes-validate package; the KEDA ScaledObject, whose CRD schema
no installable package ships, against a hand-written subset of that CRD plus explicit checks."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from consumer.settings import Settings
from tests.deploy.tools import K8S, ROOT, load_yaml, load_yaml_all

MANIFESTS = sorted(K8S.glob("*.yaml"))
BUILTIN = [p for p in MANIFESTS if p.name not in ("scaledobject.yaml", "kustomization.yaml")]
KEDA_SCHEMA = Path(__file__).with_name("keda_scaledobject.schema.json")
TOPIC_PARTITIONS = 6


def resources() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for path in MANIFESTS:
        for doc in load_yaml_all(path):
            found[doc["kind"]] = doc
    return found


@pytest.mark.parametrize("path", BUILTIN, ids=lambda p: p.name)
def test_validates_against_kubernetes_schemas(path: Path) -> None:
    version = kubernetes_validate.utils.latest_version()
    for doc in load_yaml_all(path):
        kubernetes_validate.validate(doc, version, strict=True)


def test_kubernetes_validation_is_strict() -> None:
    deployment = copy.deepcopy(resources()["Deployment"])
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, kubernetes_validate.utils.latest_version(), True)


def keda_errors(document: Any) -> list[str]:
    schema = json.loads(KEDA_SCHEMA.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    return [e.message for e in validator.iter_errors(document)]


def test_scaled_object_matches_the_keda_crd_subset() -> None:
    scaled = resources()["ScaledObject"]
    assert keda_errors(scaled) == []
    broken = copy.deepcopy(scaled)
    broken["spec"]["triggers"][0]["metadata"]["lagThreshold"] = 1000  # must be a string
    broken["spec"]["maxReplicas"] = 6
    assert len(keda_errors(broken)) == 2


def test_scaled_object_scales_the_deployment_on_kafka_lag() -> None:
    found = resources()
    scaled, deployment, config = found["ScaledObject"], found["Deployment"], found["ConfigMap"]
    spec = scaled["spec"]
    assert spec["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert spec["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
    assert spec["maxReplicaCount"] == TOPIC_PARTITIONS, "more replicas than partitions sit idle"
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    [trigger] = spec["triggers"]
    assert trigger["type"] == "kafka"
    meta = trigger["metadata"]
    assert meta["topic"] == config["data"]["KAFKA_TOPIC"]
    assert meta["consumerGroup"] == config["data"]["KAFKA_GROUP_ID"]
    assert meta["bootstrapServers"] == config["data"]["KAFKA_BOOTSTRAP_SERVERS"]
    assert int(meta["lagThreshold"]) > 0
    assert meta.get("allowIdleConsumers", "false") == "false"


def test_partition_count_matches_compose() -> None:
    compose = load_yaml(ROOT / "docker-compose.yml")
    script = " ".join(compose["services"]["kafka-init"]["command"])
    match = re.search(r"--topic user-events --partitions (\d+)", script)
    assert match and int(match.group(1)) == TOPIC_PARTITIONS


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    [only] = deployment["spec"]["template"]["spec"]["containers"]
    return only


def test_deployment_probes_resources_and_security() -> None:
    deployment = resources()["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    main = container(deployment)
    port = main["ports"][0]
    assert port["containerPort"] == 8080 and port["name"] == "http"
    assert main["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert main["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert main["livenessProbe"]["httpGet"]["port"] in ("http", 8080)
    assert main["args"] == ["run"]
    assert {"cpu", "memory"} <= set(main["resources"]["requests"])
    assert "memory" in main["resources"]["limits"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    context = main["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    # A read-only root needs a writable /tmp.
    assert any(m["mountPath"] == "/tmp" for m in main["volumeMounts"])


def test_grace_period_exceeds_the_shutdown_timeout() -> None:
    found = resources()
    grace = found["Deployment"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    configured = float(found["ConfigMap"]["data"]["SHUTDOWN_TIMEOUT_SECONDS"])
    default = Settings.model_fields["shutdown_timeout_seconds"].default
    assert grace > max(configured, default) + 5


def test_configuration_names_only_real_settings() -> None:
    found = resources()
    known = {name.upper() for name in Settings.model_fields}
    config = found["ConfigMap"]["data"]
    assert set(config) <= known, set(config) - known
    assert "DATABASE_URL" not in config, "credentials belong in the Secret"
    secret = found["Secret"]
    assert set(secret["stringData"]) == {"DATABASE_URL"}
    assert secret["stringData"]["DATABASE_URL"].startswith("postgresql://")
    sources = container(found["Deployment"])["envFrom"]
    assert {"configMapRef": {"name": found["ConfigMap"]["metadata"]["name"]}} in sources
    assert {"secretRef": {"name": secret["metadata"]["name"]}} in sources


def test_service_and_pdb_select_the_pods() -> None:
    found = resources()
    deployment = found["Deployment"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    service = found["Service"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"][0]["targetPort"] in ("http", 8080)
    pdb = found["PodDisruptionBudget"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_kustomization_lists_every_manifest_but_the_secret_example() -> None:
    kustomization = load_yaml(K8S / "kustomization.yaml")
    expected = {p.name for p in MANIFESTS} - {"kustomization.yaml", "secret.example.yaml"}
    assert set(kustomization["resources"]) == expected
