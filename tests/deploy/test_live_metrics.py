"""Against the real service: every metric that a dashboard query or an alert rule names is
exported by a live /metrics, the image's HEALTHCHECK command passes, and the compose demo
publisher really publishes (its events give the histograms and dead-letter counters samples)."""

from __future__ import annotations

import asyncio
import os
import sys
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families
from user_events_devtools.devenv import free_port
from user_events_schemas import build_event, structured_record

from tests.deploy.promql import alert_rules, dashboard_expressions, grafana_to_promql, metric_names
from tests.deploy.test_dockerfile import healthcheck_command
from tests.deploy.tools import ROOT, load_yaml
from tests.integration.support import eventually, new_settings, publish, running_service

pytestmark = pytest.mark.integration

PROMETHEUS_GENERATED = {"up"}  # written by Prometheus per target, not by the service
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "gauge": ("",),
}


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


async def scrape(port: int) -> str:
    status, body = await asyncio.to_thread(get, port, "/metrics")
    assert status == 200
    return body


def exported(text: str) -> tuple[set[str], dict[str, float]]:
    """Names the exposition declares (per TYPE, with their suffixes) and sample sums by name."""
    names: set[str] = set()
    sums: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
        for sample in family.samples:
            names.add(sample.name)
            sums[sample.name] = sums.get(sample.name, 0.0) + sample.value
    return names, sums


def queried_names() -> set[str]:
    names: set[str] = set()
    for rule in alert_rules():
        names |= metric_names(rule["expr"])
    for expr in dashboard_expressions():
        names |= metric_names(grafana_to_promql(expr))
    return names


async def run_demo_publisher(bootstrap: str, topic: str, seconds: float) -> None:
    """The compose demo-publisher's own command, for a few seconds."""
    demo = load_yaml(ROOT / "docker-compose.yml")["services"]["demo-publisher"]
    assert demo["entrypoint"] == ["python", "-c"]
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "KAFKA_TOPIC": topic}
    env["DEMO_RATE"] = "200"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        demo["command"][0],
        env=env,
        cwd=ROOT,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await asyncio.sleep(seconds)
        assert process.returncode is None, (await process.stderr.read()).decode()  # type: ignore[union-attr]
    finally:
        if process.returncode is None:
            process.terminate()
        await process.wait()


async def test_live_metrics_cover_dashboard_and_alerts(
    bootstrap_servers: str, database: str
) -> None:
    settings = await new_settings(bootstrap_servers, database)
    port = free_port()
    settings = settings.model_copy(update={"http_port": port})
    async with running_service(settings):

        async def ready() -> bool:
            try:
                status, _ = await asyncio.to_thread(get, port, "/readyz")
            except OSError:
                return False
            return status == 200

        await eventually(ready)
        events = [
            build_event(
                "user.created", "live-1", {"email": "a@example.com", "name": "Ada"}, source="/tests"
            ),
            build_event(
                "user.created", "live-2", {"email": "b@example.com", "name": "Bob"}, source="/tests"
            ),
        ]
        await publish(bootstrap_servers, settings.kafka_topic, map(structured_record, events))
        await run_demo_publisher(bootstrap_servers, settings.kafka_topic, seconds=4)

        async def processed() -> bool:
            _, sums = exported(await scrape(port))
            return (
                sums.get("user_events_dead_letters_total", 0) > 0
                and sums.get("user_events_event_age_seconds_count", 0) >= 2
            )

        await eventually(processed)
        # The image's HEALTHCHECK, run as Docker would (python -c ...), on this service.
        command = [sys.executable, *healthcheck_command()[1:]]
        healthy = await asyncio.create_subprocess_exec(
            *command, env={**os.environ, "HTTP_PORT": str(port)}
        )
        assert await healthy.wait() == 0
        nobody = await asyncio.create_subprocess_exec(
            *command,
            env={**os.environ, "HTTP_PORT": str(free_port())},
            stderr=asyncio.subprocess.DEVNULL,
        )
        assert await nobody.wait() != 0
        text = await scrape(port)

    names, sums = exported(text)
    wanted = queried_names()
    assert {"user_events_messages_total", "user_events_consumer_lag", "up"} <= wanted
    missing = wanted - names - PROMETHEUS_GENERATED
    assert not missing, f"queried but not exported: {sorted(missing)}"
    # Those that this traffic must have produced carry samples, not just a TYPE line.
    for name in (
        "user_events_messages_total",
        "user_events_dead_letters_total",
        "user_events_event_age_seconds_bucket",
        "user_events_batch_size_count",
        "user_events_batch_duration_seconds_count",
        "user_events_db_pool_connections",
        "user_events_last_commit_timestamp_seconds",
        "user_events_db_up",
    ):
        assert sums.get(name, 0) > 0, name
    assert "user_events_consumer_lag" in sums
