"""docker-compose.yml: valid against the Compose specification's JSON Schema (as vendored by
the check-jsonschema package), and wired the way the issue asks."""

from __future__ import annotations

import copy
import importlib.resources
import json
import re
from typing import Any

import jsonschema
import pytest

from consumer.settings import Settings
from tests.deploy.tools import ROOT, load_yaml, run, venv_tool

COMPOSE = ROOT / "docker-compose.yml"


def compose_schema() -> dict[str, Any]:
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    schema: dict[str, Any] = json.loads((vendor / "compose-spec.json").read_text())
    return schema


def compose_errors(document: Any) -> list[str]:
    schema = compose_schema()
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    validator = validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(document)
    ]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = load_yaml(COMPOSE)
    return document


def test_valid_against_the_compose_specification(compose: dict[str, Any]) -> None:
    assert compose_errors(compose) == []


def test_check_jsonschema_cli_agrees() -> None:
    result = run(
        [venv_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)]
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_rejects_mistakes(compose: dict[str, Any]) -> None:
    """The validator is strict enough to matter: typos and wrong types fail."""
    typo = copy.deepcopy(compose)
    typo["services"]["consumer"]["deploy"]["replica"] = 2
    assert compose_errors(typo)
    wrong_type = copy.deepcopy(compose)
    wrong_type["services"]["postgres"]["healthcheck"] = ["pg_isready"]
    assert compose_errors(wrong_type)


def test_kafka_is_a_kraft_single_node_with_a_healthcheck(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = kafka["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka:9093"
    assert "test" in kafka["healthcheck"]


def test_topics_are_created_by_a_one_shot_service(compose: dict[str, Any]) -> None:
    init = compose["services"]["kafka-init"]
    assert init["depends_on"]["kafka"]["condition"] == "service_healthy"
    script = " ".join(init["command"]).replace("\\\n", " ")
    assert re.search(r"--topic user-events --partitions 6\b", script)
    assert "--topic user-events.dlq" in script
    assert script.count("kafka-topics.sh") >= 2 and script.count("--if-not-exists") == 2


def test_the_dead_letter_topic_keeps_records_7_days_by_default(compose: dict[str, Any]) -> None:
    """A finite retention.ms, from DLQ_RETENTION_MS (documented), on creation and on a topic
    that exists already."""
    script = compose["services"]["kafka-init"]["command"][0].replace("\\\n", " ")
    lines = script.splitlines()
    [create] = [line for line in lines if "--create" in line and "--topic user-events.dlq" in line]
    [alter] = [line for line in lines if "kafka-configs.sh" in line]
    assert "--alter" in alter and "--entity-name user-events.dlq" in alter
    defaults = []
    for command in (create, alter):
        found = re.findall(r"retention\.ms=\$\{DLQ_RETENTION_MS:-(-?\d+)\}(?=[\s,]|$)", command)
        assert len(found) == 1, command
        defaults.append(int(found[0]))
    assert defaults == [7 * 24 * 3600 * 1000] * 2
    documented = (ROOT / "docs/operations.md").read_text()
    assert "DLQ_RETENTION_MS" in documented and "604800000" in documented


def test_postgres_16_with_healthcheck_and_named_volume(compose: dict[str, Any]) -> None:
    postgres = compose["services"]["postgres"]
    assert postgres["image"] == "postgres:16"
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    volume = postgres["volumes"][0].split(":")[0]
    assert volume in compose["volumes"]


def test_consumer_has_two_replicas_in_one_group(compose: dict[str, Any]) -> None:
    consumer = compose["services"]["consumer"]
    assert consumer["build"]["dockerfile"] == "Dockerfile"
    assert (ROOT / consumer["build"]["context"] / consumer["build"]["dockerfile"]).exists()
    assert consumer["deploy"]["replicas"] == 2
    assert "container_name" not in consumer and "ports" not in consumer
    env = consumer["environment"]
    assert env["KAFKA_GROUP_ID"] == "user-events-consumer"
    assert env["KAFKA_TOPIC"] == "user-events" and env["KAFKA_DLQ_TOPIC"] == "user-events.dlq"
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert env["DATABASE_URL"].endswith("@postgres:5432/user_events")
    # Every variable is one the service reads (consumer/settings.py), so none is a typo.
    known = {name.upper() for name in Settings.model_fields}
    assert set(env) <= known, set(env) - known
    grace = int(consumer["stop_grace_period"].removesuffix("s"))
    assert grace > float(env["SHUTDOWN_TIMEOUT_SECONDS"])
    assert consumer["depends_on"]["kafka-init"]["condition"] == "service_completed_successfully"
    assert consumer["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_every_dependency_and_mounted_file_exists(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        depends = service.get("depends_on", {})
        for dependency in depends if isinstance(depends, list) else depends.keys():
            assert dependency in services, f"{name} depends on unknown {dependency}"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in compose["volumes"], f"{name} uses undeclared volume {source}"


def test_prometheus_and_grafana_are_provisioned(compose: dict[str, Any]) -> None:
    prometheus = compose["services"]["prometheus"]
    assert prometheus["image"].startswith("prom/prometheus:")
    mounts = {v.split(":")[1]: v.split(":")[0] for v in prometheus["volumes"]}
    assert mounts["/etc/prometheus/prometheus.yml"] == "./deploy/prometheus/prometheus.yml"
    assert mounts["/etc/prometheus/alerts.yml"] == "./deploy/prometheus/alerts.yml"
    scrape = load_yaml(ROOT / "deploy/prometheus/prometheus.yml")
    assert scrape["rule_files"] == ["alerts.yml"]
    [job] = [j for j in scrape["scrape_configs"] if j["job_name"] == "user-events-consumer"]
    [sd] = job["dns_sd_configs"]
    assert sd["names"] == ["consumer"] and sd["type"] == "A" and sd["port"] == 8080
    grafana = compose["services"]["grafana"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in grafana["volumes"]}
    assert mounts["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning"
    dashboards_dir = load_yaml(ROOT / "deploy/grafana/provisioning/dashboards/user-events.yml")[
        "providers"
    ][0]["options"]["path"]
    assert any(
        target.startswith(dashboards_dir + "/") and source == "./deploy/grafana/dashboard.json"
        for target, source in mounts.items()
    )
    datasource = load_yaml(ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml")
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"


def test_demo_publisher_is_optional_and_compiles(compose: dict[str, Any]) -> None:
    demo = compose["services"]["demo-publisher"]
    assert demo["profiles"] == ["demo"]
    assert demo["entrypoint"] == ["python", "-c"]
    assert "$" not in demo["command"][0], "compose would interpolate it"
    compile(demo["command"][0], "demo-publisher", "exec")  # run for real in test_live_metrics
    # its demo data comes from the checkout's development tools, which the image goes without
    assert "./devtools:/opt/devtools:ro" in demo["volumes"]
    assert demo["environment"]["PYTHONPATH"] == "/opt/devtools"
    assert (ROOT / "devtools/user_events_devtools/demo.py").exists()
    others = [s for name, s in compose["services"].items() if name != "demo-publisher"]
    assert all("profiles" not in service for service in others)
