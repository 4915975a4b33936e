"""The Grafana dashboard: well formed, every query parses as PromQL, the issue's panels exist,
and the provisioning points at it."""

from __future__ import annotations

import re

from tests.deploy.promql import (
    alert_rules,
    dashboard,
    dashboard_expressions,
    grafana_to_promql,
    metric_names,
)
from tests.deploy.tools import GRAFANA, load_yaml


def panels_by_title() -> dict[str, dict]:  # type: ignore[type-arg]
    return {p["title"]: p for p in dashboard()["panels"] if p["type"] != "row"}


def test_dashboard_is_well_formed() -> None:
    board = dashboard()
    assert board["uid"] and board["title"] and board["schemaVersion"] >= 36
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in board["templating"]["list"]}
    assert {"datasource", "job", "instance"} <= variables
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids))


def test_every_query_parses_as_promql() -> None:
    for expr in dashboard_expressions():
        assert metric_names(grafana_to_promql(expr)), expr


def test_the_issue_s_panels_exist() -> None:
    panels = panels_by_title()

    def uses(title: str, *names: str) -> None:
        exprs = [grafana_to_promql(t["expr"]) for t in panels[title]["targets"]]
        found = set().union(*(metric_names(e) for e in exprs))
        assert set(names) <= found, (title, found)

    uses("Throughput by outcome", "user_events_messages_total")
    assert "by (outcome)" in panels["Throughput by outcome"]["targets"][0]["expr"]
    uses("Dead letters by reason", "user_events_dead_letters_total")
    assert "by (reason)" in panels["Dead letters by reason"]["targets"][0]["expr"]
    uses("Lag by partition", "user_events_consumer_lag")
    assert "partition" in panels["Lag by partition"]["targets"][0]["expr"]
    uses("Lag in seconds by partition", "user_events_consumer_lag_seconds")
    assert "partition" in panels["Lag in seconds by partition"]["targets"][0]["expr"]
    uses("Held by the dead-letter guard", "user_events_dlq_guard_tripped")
    assert "partition" in panels["Held by the dead-letter guard"]["targets"][0]["expr"]
    uses("Held past the end of the log", "user_events_offset_past_end")
    assert "partition" in panels["Held past the end of the log"]["targets"][0]["expr"]
    uses("Event age percentiles", "user_events_event_age_seconds_bucket")
    assert len(panels["Event age percentiles"]["targets"]) == 3
    uses("Batch size", "user_events_batch_size_bucket")
    uses("Batch duration", "user_events_batch_duration_seconds_bucket")
    uses("Database pool connections", "user_events_db_pool_connections")
    uses("Retries by operation", "user_events_retries_total")


def test_the_time_lag_panel_draws_the_alert_s_threshold() -> None:
    panel = panels_by_title()["Lag in seconds by partition"]
    assert panel["fieldConfig"]["defaults"]["unit"] == "s"
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    [rule] = [r for r in alert_rules() if r["alert"] == "UserEventsConsumerTimeLag"]
    threshold = re.search(r"\) > (\d+)\s*$", rule["expr"])
    assert threshold and steps[-1] == {"color": "red", "value": int(threshold.group(1))}


def test_provisioning() -> None:
    provider = load_yaml(GRAFANA / "provisioning/dashboards/user-events.yml")["providers"][0]
    assert provider["type"] == "file" and provider["options"]["path"]
    datasource = load_yaml(GRAFANA / "provisioning/datasources/prometheus.yml")["datasources"][0]
    assert datasource["type"] == "prometheus" and datasource["isDefault"] is True
