"""Every tool command ends the same way: one line on stderr and a documented exit code
(0 done, 1 done with refusals, 2 could not run), never a traceback nor a secret."""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import dataclass

import pytest
from user_events_devtools.devenv import free_port
from user_events_schemas import build_event, structured_record

from consumer.edges.migrate import shipped_migrations
from consumer.settings import Settings
from consumer.tools.clients import open_tool_store
from tests.integration.support import new_settings, publish, service_env

pytestmark = pytest.mark.integration

Header = tuple[str, bytes]

PASSWORD = "hunter2-not-for-logs"
TOOLS = {
    "replay": ["replay", "--from", "earliest"],
    "dlq list": ["dlq", "list"],
    "dlq redrive": ["dlq", "redrive"],
    "rebuild": ["rebuild"],
    "status": ["status"],
    "event": ["event", "--source", "/signup", "--id", "e-1"],
}


@dataclass
class Ended:
    code: int
    stdout: str
    stderr: str

    @property
    def error_line(self) -> str:
        """The one line the runner wrote, after asserting that it is all of stderr."""
        lines = self.stderr.strip().splitlines()
        assert len(lines) == 1, self.stderr
        assert lines[0].startswith("user-events-consumer: ")
        return lines[0]


async def run_cli(args: list[str], env: dict[str, str]) -> Ended:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "consumer.cli",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    ended = Ended(process.returncode, out.decode(), err.decode())
    assert "Traceback" not in ended.stderr and PASSWORD not in ended.stdout + ended.stderr
    return ended


async def ready(bootstrap: str, database: str) -> tuple[Settings, dict[str, str]]:
    """Settings on fresh topics and a migrated database, and the tools' environment for
    them (short timeouts: failing fast is what is tested)."""
    settings = await new_settings(bootstrap, database, partitions=1)
    store = await open_tool_store(settings)  # so that the tools have no migration to log
    await store.close()
    env = service_env(settings, DB_CONNECT_TIMEOUT_SECONDS="2")
    return settings, env


@pytest.mark.parametrize("tool", TOOLS)
async def test_a_tool_with_postgresql_unreachable_says_so_in_one_line_and_exits_2(
    bootstrap_servers: str, database: str, tool: str
) -> None:
    _, env = await ready(bootstrap_servers, database)
    env["DATABASE_URL"] = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{free_port()}/postgres"
    ended = await run_cli(TOOLS[tool], env)
    if tool == "dlq list":  # it reads the dead-letter topic only
        assert ended.code == 0 and "dead-letter topic" in ended.stdout
        return
    assert ended.code == 2
    assert (
        ended.error_line == "user-events-consumer: cannot reach PostgreSQL: ConnectionRefusedError"
    )


@pytest.mark.parametrize("tool", TOOLS)
async def test_a_tool_with_kafka_unreachable_says_so_in_one_line_and_exits_2(
    bootstrap_servers: str, database: str, tool: str
) -> None:
    _, env = await ready(bootstrap_servers, database)
    broker = f"127.0.0.1:{free_port()}"
    env["KAFKA_BOOTSTRAP_SERVERS"] = broker
    ended = await run_cli(TOOLS[tool], env)
    if tool == "rebuild":  # it reads the event log only
        assert ended.code == 0 and "rebuilt users from 0 logged events" in ended.stdout
        return
    assert ended.code == 2
    assert ended.error_line == (
        f"user-events-consumer: cannot reach Kafka at {broker} (KafkaConnectionError)"
    )


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["replay", "--from", "yesterday"], "'yesterday' is not an RFC 3339 time"),
        (["replay", "--from", "0:1,0:2"], "--from '0:1,0:2' gives partition 0 twice"),
        (["replay", "--from", "earliest", "--to", "2026-01-01T00:00:00"], "has no UTC offset"),
        (["replay", "--from", "9:0"], "has no partition 9"),
        (["replay", "--from", "earliest", "--topic", "nowhere"], "'nowhere' does not exist"),
        (["dlq", "list", "--last", "-1"], "--last '-1' is negative: give 0 or more"),
        (["dlq", "redrive", "--since", "soon"], "'soon' is not an RFC 3339 time"),
        (["dlq", "redrive", "--offsets", "0:1:2"], "is not a list of partition:offset pairs"),
        (
            ["dlq", "redrive", "--max-redrives", "-1"],
            "--max-redrives '-1' is negative: give 0 or more",
        ),
    ],
)
async def test_a_bad_argument_is_one_line_and_exit_2(
    bootstrap_servers: str, database: str, args: list[str], said: str
) -> None:
    _, env = await ready(bootstrap_servers, database)
    ended = await run_cli(args, env)
    assert ended.code == 2 and said in ended.error_line and not ended.stdout


async def test_nonsense_is_refused_in_one_line_naming_the_flag_and_what_was_wrong(
    bootstrap_servers: str, database: str
) -> None:
    settings, env = await ready(bootstrap_servers, database)
    dlq, topic = settings.kafka_dlq_topic, settings.kafka_topic
    refused = {
        ("dlq", "redrive", "--offsets", "5:0"): (
            f"--offsets '5:0': topic {dlq!r} has no partition 5 (it has partition 0 only)"
        ),
        ("dlq", "redrive", "--dry-run", "--offsets", "0:3"): (
            f"--offsets '0:3': offset 3 is past the end of partition 0 of {dlq!r} "
            "(its end offset is 0)"
        ),
        ("dlq", "show", "5:0"): (
            f"dlq show '5:0': topic {dlq!r} has no partition 5 (it has partition 0 only)"
        ),
        ("dlq", "show", "abc"): "dlq show 'abc' is not a partition:offset such as 0:42",
        ("dlq", "show", "-1:0"): "dlq show '-1:0' has partition -1: a partition is 0 or more",
        ("dlq", "list", "--since", "yesterday"): (
            "--since 'yesterday' is not an RFC 3339 time such as 2026-01-01T00:00:00Z"
        ),
        ("replay", "--from", "2026-02-01T00:00:00Z", "--to", "2026-01-01T00:00:00Z"): (
            "--from '2026-02-01T00:00:00Z' is not before --to '2026-01-01T00:00:00Z'"
        ),
        ("replay", "--dry-run", "--from", "0:99999"): (
            f"--from '0:99999': offset 99999 is past the end of partition 0 of {topic!r} "
            "(its end offset is 0)"
        ),
    }
    redrives = [args for args in refused if args[:2] == ("dlq", "redrive")]
    others = [args for args in refused if args not in redrives]

    async def one_by_one() -> list[Ended]:  # a second redrive at once would be refused
        return [await run_cli(list(args), env) for args in redrives]

    by_one, *at_once = await asyncio.gather(
        one_by_one(), *(run_cli(list(args), env) for args in others)
    )
    ended = dict(zip(redrives + others, [*by_one, *at_once], strict=True))
    for args, said in refused.items():
        end = ended[args]
        assert (end.code, end.error_line, end.stdout) == (2, f"user-events-consumer: {said}", ""), (
            args
        )


async def test_migrate_says_what_it_did(bootstrap_servers: str, database: str) -> None:
    _, env = await ready(bootstrap_servers, database)  # migrated already
    latest = max(m.version for m in shipped_migrations())
    ended = await run_cli(["migrate"], env)
    assert ended.code == 0 and ended.stdout == f"nothing to apply: up to date at {latest:04d}\n"


async def test_an_unknown_option_exits_2_without_a_traceback(
    bootstrap_servers: str, database: str
) -> None:
    _, env = await ready(bootstrap_servers, database)
    ended = await run_cli(["rebuild", "--bogus"], env)
    assert ended.code == 2 and "unrecognized arguments: --bogus" in ended.stderr


async def test_a_redrive_that_refuses_letters_exits_1_and_a_rerun_that_skips_them_0(
    bootstrap_servers: str, database: str
) -> None:
    settings, env = await ready(bootstrap_servers, database)
    key, value, headers = structured_record(
        build_event("user.updated", "ghost", {"name": "N"}, source="/tests")
    )

    def letter(reason: str, *extra: tuple[str, bytes]) -> tuple[bytes, bytes, list[Header]]:
        provenance = [
            ("dlq.reason", reason.encode()),
            ("dlq.original.topic", settings.kafka_topic.encode()),
        ]
        return key, value, [*headers, *provenance, *extra]

    await publish(
        bootstrap_servers,
        settings.kafka_dlq_topic,
        [letter("unknown_user"), letter("conflict", ("dlq.redrive.count", b"3"))],
    )
    would = await run_cli(["dlq", "redrive", "--dry-run", "--json"], env)
    assert would.code == 1 and len(json.loads(would.stdout)["refused"]) == 1
    chosen = await run_cli(["dlq", "redrive", "--reason", "unknown_user", "--json"], env)
    assert chosen.code == 0 and json.loads(chosen.stdout)["redriven"] == 1
    rest = await run_cli(["dlq", "redrive", "--json"], env)
    report = json.loads(rest.stdout)
    assert rest.code == 1 and [r["offset"] for r in report["refused"]] == [1]
    assert "redriven 3 times already" in report["refused"][0]["detail"]
    again = await run_cli(["dlq", "redrive"], env)  # the refused letter is handled now
    assert again.code == 0 and "already handled by an earlier redrive: 0" in again.stdout
