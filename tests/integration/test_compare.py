"""`compare` end to end at a small N on the suite's servers: this checkout against itself,
each side drained once by its own bench in a subprocess (not a timed test). A ref's side
(a worktree installed by its own Makefile, a minute of pip) is left to the hand: its
refusal of a ref that names nothing is checked here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

from user_events_devtools.interpreter import python_build

ROOT = Path(__file__).resolve().parents[2]


def test_compare_drains_each_side_in_turn_and_reports_their_figures_side_by_side(
    bootstrap_servers: str, server_url: str, tmp_path: Path
) -> None:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap_servers, "DATABASE_URL": server_url}
    command = [sys.executable, "-m", "consumer.cli", "compare", ".", ".", "--rounds", "1"]
    command += ["--events", "800", "--users", "200", "--work", str(tmp_path)]

    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)

    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    results = tmp_path / "compare-results"
    summary = json.loads((results / "compare-results.json").read_text())
    sides = summary["sides"]
    assert [s["rounds"] for s in sides] == [1, 1]
    for side in sides:
        assert side["medians"]["events_per_second"] > 0
        assert side["medians"]["us_per_event"] > 0
    assert {p["figure"]: len(p["differences"]) for p in summary["paired"]} == {
        "events_per_second": 1,
        "us_per_event": 1,
        "postgres_us_per_event": 1,
    }
    # One round, untied or tied: a coin would do as well (1.0), or there is nothing to test.
    assert {p["sign_test_p"] for p in summary["paired"]} <= {1.0, None}
    assert summary["python"] == ".".join(map(str, sys.version_info[:3]))
    assert summary["python_build"] == python_build(sysconfig.get_config_var("CONFIG_ARGS"))
    assert "round 1: first-checkout:" in done.stdout
    assert "us_per_event: median difference" in done.stdout
    # each drain's own results and log, beside the summary
    drains = ["first-checkout-1", "second-checkout-1"]
    assert sorted(p.stem for p in results.glob("*-1.json")) == drains
    assert all((results / f"{name}.log").stat().st_size > 0 for name in drains)


def test_a_ref_that_names_no_commit_is_refused_before_anything_runs(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "consumer.cli", "compare", "no-such-ref", "."]
    command += ["--work", str(tmp_path)]

    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)

    assert done.returncode == 2
    assert done.stderr == "compare: could not prepare side 'no-such-ref': it names no commit\n"
    assert not any(tmp_path.iterdir())
