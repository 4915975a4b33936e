"""deploy/k8s: every built-in resource validates (strictly) against the Kubernetes JSON
schemas shipped by the kubernetes-validate package; the KEDA ScaledObject, whose CRD schema
no installable package ships, against a hand-written subset of that CRD plus explicit checks."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
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
SEVEN_DAYS_MS = 7 * 24 * 3600 * 1000


def resources() -> dict[str, dict[str, Any]]:
    """Every resource as "Kind/name"; the consumer's own (component: consumer) as "Kind" too."""
    found: dict[str, dict[str, Any]] = {}
    for path in MANIFESTS:
        for doc in load_yaml_all(path):
            metadata = doc.get("metadata", {})
            found[f"{doc['kind']}/{metadata.get('name', '')}"] = doc
            if metadata.get("labels", {}).get("app.kubernetes.io/component") == "consumer":
                assert doc["kind"] not in found, f"two {doc['kind']}s of the consumer"
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


def topics_job() -> tuple[dict[str, Any], dict[str, Any]]:
    """The topics Job's container and its own ConfigMap's data."""
    found = resources()
    [only] = found["Job/user-events-topics"]["spec"]["template"]["spec"]["containers"]
    return only, found["ConfigMap/user-events-topics"]["data"]


def test_topics_job_reads_names_from_the_consumer_s_config_map() -> None:
    job, topics = topics_job()
    found = resources()
    consumer = found["ConfigMap"]
    sources = {"user-events-consumer": consumer["data"], "user-events-topics": topics}
    for variable in job["env"]:
        if "valueFrom" in variable:
            ref = variable["valueFrom"]["configMapKeyRef"]
            assert ref["key"] in sources[ref["name"]], ref
    by_source = {
        v["name"]: v["valueFrom"]["configMapKeyRef"]["name"] for v in job["env"] if "valueFrom" in v
    }
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "KAFKA_TOPIC", "KAFKA_DLQ_TOPIC"):
        assert by_source[name] == consumer["metadata"]["name"], name
    compose = load_yaml(ROOT / "docker-compose.yml")
    assert job["image"] == compose["services"]["kafka-init"]["image"]
    assert job["image"] == compose["services"]["kafka"]["image"]


def test_topics_job_is_locked_down_like_the_deployment() -> None:
    pod = resources()["Job/user-events-topics"]["spec"]["template"]["spec"]
    job, _ = topics_job()
    assert pod["restartPolicy"] in ("OnFailure", "Never")
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert isinstance(pod["securityContext"]["runAsUser"], int)  # the image's USER is a name
    context = job["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    assert any(m["mountPath"] == "/tmp" for m in job["volumeMounts"])
    assert "memory" in job["resources"]["limits"]


def run_topics_job(tmp_path: Path, **overrides: str) -> list[list[str]]:
    """The Job's script under sh, with kafka-topics.sh and kafka-configs.sh replaced by stubs
    that record their arguments, and the environment its ConfigMaps give it."""
    job, topics = topics_job()
    consumer = resources()["ConfigMap"]["data"]
    data = {"user-events-consumer": consumer, "user-events-topics": {**topics, **overrides}}
    env = {"PATH": os.environ["PATH"]}
    for variable in job["env"]:
        if "valueFrom" in variable:
            ref = variable["valueFrom"]["configMapKeyRef"]
            env[variable["name"]] = data[ref["name"]][ref["key"]]
        else:
            env[variable["name"]] = variable["value"]
    calls = tmp_path / "calls"
    for tool in ("kafka-topics.sh", "kafka-configs.sh"):
        stub = tmp_path / tool
        stub.write_text(
            f'#!/bin/sh\nfor a in {tool} "$@"; do printf "%s\\0" "$a"; done >> {calls}\n'
            f'printf "\\n" >> {calls}\n'
        )
        stub.chmod(0o755)
    assert job["command"] == ["/bin/sh", "-c"]
    script = job["args"][0].replace("/opt/kafka/bin/", f"{tmp_path}/")
    result = subprocess.run(["/bin/sh", "-c", script], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return [line.split("\0")[:-1] for line in calls.read_text().splitlines()]


def test_topics_job_creates_both_topics_idempotently(tmp_path: Path) -> None:
    calls = run_topics_job(tmp_path)
    creates = [c for c in calls if c[0] == "kafka-topics.sh" and "--create" in c]
    assert len(creates) == 2 and all("--if-not-exists" in c for c in creates)
    main, dlq = creates
    assert main[main.index("--topic") + 1] == "user-events"
    assert int(main[main.index("--partitions") + 1]) == TOPIC_PARTITIONS
    assert dlq[dlq.index("--topic") + 1] == "user-events.dlq"
    assert dlq[dlq.index("--partitions") + 1] == "1"
    configs = [dlq[i + 1] for i, arg in enumerate(dlq) if arg == "--config"]
    assert configs == ["max.message.bytes=1114112", f"retention.ms={SEVEN_DAYS_MS}"]
    # A topic that exists already gets the same settings.
    [alter] = [c for c in calls if c[0] == "kafka-configs.sh" and "--alter" in c]
    assert alter[alter.index("--entity-name") + 1] == "user-events.dlq"
    added = dict(a.split("=") for a in alter[alter.index("--add-config") + 1].split(","))
    assert added == {"max.message.bytes": "1114112", "retention.ms": str(SEVEN_DAYS_MS)}
    assert calls.index(alter) > calls.index(dlq)


def test_the_dead_letter_topic_keeps_records_7_days_by_default(tmp_path: Path) -> None:
    _, topics = topics_job()
    assert int(topics["DLQ_RETENTION_MS"]) == SEVEN_DAYS_MS  # finite: not -1
    assert int(topics["DLQ_MAX_MESSAGE_BYTES"]) >= (
        Settings.model_fields["max_message_bytes"].default + 16 * 1024
    )
    assert int(topics["TOPIC_PARTITIONS"]) == resources()["ScaledObject"]["spec"]["maxReplicaCount"]
    # The ConfigMap's value is what reaches the broker.
    calls = run_topics_job(tmp_path, DLQ_RETENTION_MS="86400000")
    [alter] = [c for c in calls if "--alter" in c]
    assert "retention.ms=86400000" in alter[alter.index("--add-config") + 1]
