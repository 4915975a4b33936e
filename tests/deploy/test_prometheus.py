"""Alert rules: promtool checks them, and runs a unit test of every alert."""

from __future__ import annotations

import re

from tests.deploy.promql import alert_rules, metric_names
from tests.deploy.tools import PROMETHEUS, ROOT, load_yaml, promtool, run

REQUIRED = {
    "user_events_consumer_lag": "lag growing",
    "user_events_dead_letters_total": "dead letters",
    "user_events_last_commit_timestamp_seconds": "no commit",
    "user_events_db_up": "database down",
    "up": "target down",
    "user_events_event_age_seconds_bucket": "event age p99",
    "user_events_consumer_lag_seconds": "time lag",
    "user_events_dlq_guard_tripped": "storm guard tripped",
    "user_events_offset_past_end": "stored offset past the end of the log",
}


def test_promtool_check_rules() -> None:
    result = run([promtool(), "check", "rules", "alerts.yml"], cwd=PROMETHEUS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_check_config() -> None:
    result = run([promtool(), "check", "config", "prometheus.yml"], cwd=PROMETHEUS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_of_the_alerts() -> None:
    result = run([promtool(), "test", "rules", "alerts_test.yml"], cwd=PROMETHEUS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_issue_s_alerts_exist() -> None:
    used = set().union(*(metric_names(rule["expr"]) for rule in alert_rules()))
    missing = {what for name, what in REQUIRED.items() if name not in used}
    assert not missing
    exprs = " ".join(rule["expr"] for rule in alert_rules())
    assert "histogram_quantile(0.99" in exprs and "> 5" in exprs
    assert "time() - user_events_last_commit_timestamp_seconds > 300" in exprs
    assert 'up{job="user-events-consumer"} == 0' in exprs
    assert 'user_events_consumer_lag_seconds{job="user-events-consumer"}) > 300' in exprs
    assert 'user_events_dlq_guard_tripped{job="user-events-consumer"} == 1' in exprs
    assert 'user_events_offset_past_end{job="user-events-consumer"}) > 0' in exprs


def test_every_alert_has_a_firing_unit_test_and_a_runbook() -> None:
    tests = load_yaml(PROMETHEUS / "alerts_test.yml")["tests"]
    firing = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    quiet = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if not case.get("exp_alerts")
    }
    runbook = (ROOT / "docs/operations.md").read_text()
    headings = {h.strip().lower() for h in re.findall(r"^#+\s+(.+)$", runbook, re.M)}
    job = load_yaml(PROMETHEUS / "prometheus.yml")["scrape_configs"][0]["job_name"]
    for rule in alert_rules():
        name = rule["alert"]
        assert name in firing, f"{name} has no test where it fires"
        assert name in quiet, f"{name} has no test where it stays quiet"
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["runbook_url"] == f"docs/operations.md#{name.lower()}"
        assert name.lower() in headings, f"docs/operations.md has no runbook section {name}"
        if "job=" in rule["expr"]:
            assert f'job="{job}"' in rule["expr"]
