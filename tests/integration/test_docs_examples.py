"""The command examples of the README and docs/ run here, against the real broker and
PostgreSQL, and must print what the docs show (times, ids, durations and ports masked:
tests/docexamples.py). Each example names its world: the events and the state it was
written against, built below by the real service and tools. A new example names one of
these worlds, or a new world is added here. The outputs are the embedded broker's (tansu),
as `make dev` shows them; Apache Kafka differs in one place: it drops a stopped member
from its group, which the `lag` world's status lines would then not list.

Why a small runner of our own rather than a console-example library (cram/prysk, sybil,
byexample): the examples live in Markdown meant for readers, the commands need servers
and a state built with the project's own helpers, and the outputs need masks only this
project knows (topic names, times in its formats). What a library would add, the
Markdown parsing and a pattern match, is the 100 lines of tests/docexamples.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from user_events_devtools.devenv import free_port
from user_events_schemas import binary_record, build_event, structured_record

from consumer.settings import Settings
from tests.conftest import database_url
from tests.docexamples import Example, examples_in, masked, prints_what_is_shown
from tests.integration.support import (
    eventually,
    new_settings,
    publish,
    running_service,
    service_env,
    start_service_process,
    stored_offsets,
)
from tests.integration.test_dry_runs import only_the_first_migration

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DOCUMENTED_TOPIC, DOCUMENTED_GROUP = "user-events", "user-events-consumer"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
Message = tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]


@dataclass
class World:
    """Where a world's examples run: their environment and directory, and the names the
    docs use for what this run named otherwise."""

    env: dict[str, str]
    cwd: Path
    renames: dict[str, str] = field(default_factory=dict)
    http_port: int | None = None

    def run(self, command: str, last_code: int) -> tuple[int, str]:
        if command == "echo $?":
            return 0, f"{last_code}\n"
        if self.http_port is not None:
            command = command.replace("localhost:8080", f"localhost:{self.http_port}")
        code, printed = in_a_terminal(["bash", "-c", command], self.env, self.cwd)
        for actual, documented in self.renames.items():
            printed = printed.replace(actual, documented)
        return code, printed


def in_a_terminal(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str]:
    """Exit code and output of ``argv`` run on a pseudo-terminal, as the docs' reader runs
    it: the tools write console lines to a terminal (JSON lines to a pipe), and stdout and
    stderr arrive in the order they were written."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        argv, stdin=follower, stdout=follower, stderr=follower, env=env, cwd=cwd
    )
    os.close(follower)
    output = bytearray()
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.5)
            if not ready:
                continue
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: every writer has closed the terminal
                break
            if not chunk:
                break
            output += chunk
    finally:
        os.close(leader)
        if process.poll() is None and time.monotonic() >= deadline:
            process.kill()
    code = process.wait(10)
    if time.monotonic() >= deadline:  # a hang fails, whatever it printed before
        return code, output.decode() + "\n<timed out after 60 s>\n"
    return code, output.decode().replace("\r\n", "\n")


def all_examples() -> list[Example]:
    return [example for path in DOCUMENTS for example in examples_in(path)]


def tool_env(settings: Settings | None = None, **extra: str) -> dict[str, str]:
    """The tools' environment, this interpreter's scripts first on PATH."""
    env = service_env(settings) if settings is not None else {"PATH": os.environ["PATH"]}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env.update(extra)
    return env


def documented_names(settings: Settings) -> dict[str, str]:
    # The dead-letter topic first: its name starts with the topic's.
    return {
        settings.kafka_dlq_topic: f"{DOCUMENTED_TOPIC}.dlq",
        settings.kafka_group_id: DOCUMENTED_GROUP,
        settings.kafka_topic: DOCUMENTED_TOPIC,
    }


def run_examples(world: World, name: str) -> None:
    """Every example of ``world``, in the docs' order; all mismatches reported at once."""
    mine = [example for example in all_examples() if example.world == name]
    assert mine, f"no example names the world {name!r}"
    failures: list[str] = []
    for example in mine:
        code = 0
        commands = example.commands
        for command, following in zip(commands, [*commands[1:], None], strict=True):
            code, printed = world.run(command.text, code)
            where = f"{example.path.name}:{command.line}: $ {command.text}"
            if not prints_what_is_shown(printed, command.shows):
                failures.append(
                    f"{where}\n"
                    f"--- the docs show (masked)\n{masked(chr(10).join(command.shows))}\n"
                    f"--- the run printed (masked)\n{masked(printed)}\n"
                )
            # An exit code other than 0 is shown by the `echo $?` that follows, or fails.
            if code != 0 and (following is None or following.text != "echo $?"):
                failures.append(f"{where}\nexited {code}, and the docs show no `echo $?`\n")
    assert not failures, "\n".join(failures)


def test_every_example_names_a_world_this_module_builds() -> None:
    named = {example.where: example.world for example in all_examples()}
    assert named, "no examples found: has the docs' layout changed?"
    unknown = {where: world for where, world in named.items() if world not in WORLDS}
    assert not unknown, f"examples without a known world (<!-- example: NAME -->): {unknown}"


# The worlds.


def created(user: str, seq: int, event_id: str, email: str, name: str, source: str) -> Message:
    event = build_event(
        "user.created",
        user,
        {"email": email, "name": name},
        source=source,
        sequence=seq,
        event_id=event_id,
        time=T0 + timedelta(seconds=seq),
    )
    return structured_record(event)


def updated(user: str, seq: int, event_id: str, source: str = "/profile", **data: str) -> Message:
    event = build_event(
        "user.updated",
        user,
        data,
        source=source,
        sequence=seq,
        event_id=event_id,
        time=T0 + timedelta(seconds=seq),
    )
    return binary_record(event)


def deleted(user: str, seq: int, event_id: str) -> Message:
    event = build_event(
        "user.deleted",
        user,
        source="/accounts",
        sequence=seq,
        event_id=event_id,
        time=T0 + timedelta(seconds=seq),
    )
    return binary_record(event)


async def drained(settings: Settings, database: str, offsets: dict[int, int]) -> None:
    """Run the real service until it has stored ``offsets``, then stop it."""
    async with running_service(settings):

        async def there() -> bool:
            try:
                return await stored_offsets(database, settings.kafka_group_id) == offsets
            except asyncpg.UndefinedTableError:  # the service has not migrated yet
                return False

        await eventually(there, timeout=40)


def contract_world(tmp: Path) -> World:
    """The README's `user-events-schemas validate` file."""
    good = build_event(
        "user.created",
        "u-42",
        {"email": "ada@example.com", "name": "Ada"},
        source="/signup-service",
        sequence=1,
    )
    lines = [
        good,
        {**good, "type": "user.updated", "data": {}},  # an update of nothing
        {**good, "time": "yesterday", "data": {"email": "not-an-email", "name": "Ada"}},
        {**good, "type": "user.renamed"},
    ]
    (tmp / "events.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return World(tool_env(), tmp)


async def deadletters_world(bootstrap: str, database: str, tmp: Path) -> World:
    """One partition: a user, then one record of each way to fail. Parking is off
    (PARK_TTL=0), so the conflict and the unknown user are dead-lettered at once. The
    unknown user's record had been redriven three times already."""
    settings = await new_settings(bootstrap, database, partitions=1, park_ttl=timedelta(0))
    ghost_key, ghost_value, ghost_headers = updated("u-999", 2, "crm-9", "/crm", name="Cy")
    await publish(
        bootstrap,
        settings.kafka_topic,
        [
            created("u-123", 1, "crm-1", "ada@example.com", "Ada", "/crm"),
            created("u-124", 1, "crm-2", "ada@example.com", "Ada", "/crm"),  # conflict
            invalid_signup(),
            without_id(),
            (b"u-127", b"{not json", _structured()),
            (ghost_key, ghost_value, [*ghost_headers, ("dlq.redrive.count", b"3")]),
        ],
    )
    await drained(settings, database, {0: 6})
    return World(tool_env(settings), tmp, documented_names(settings))


def invalid_signup() -> Message:
    """A user.created whose email and name break the contract (build_event refuses it)."""
    event = build_event(
        "user.created", "u-125", {"email": "a@example.com", "name": "A"}, source="/signup"
    )
    event["data"] = {"email": "not-an-email", "name": ""}
    return b"u-125", json.dumps(event).encode(), _structured()


def without_id() -> Message:
    event = build_event(
        "user.created", "u-126", {"email": "b@example.com", "name": "B"}, source="/signup"
    )
    del event["id"]
    return b"u-126", json.dumps(event).encode(), _structured()


def _structured() -> list[tuple[str, bytes]]:
    return [("content-type", b"application/cloudevents+json")]


async def lag_world(bootstrap: str, database: str, tmp: Path) -> World:
    """Three partitions drained by a consumer that then stopped; records arrived since, on
    partitions 1 and 2, published 15 seconds ago."""
    settings = await new_settings(bootstrap, database, partitions=3)
    topic = settings.kafka_topic
    await publish(
        bootstrap,
        topic,
        [
            created("user-1", 1, "signup-1", "one@example.com", "One", "/signup"),
            created("user-2", 1, "signup-2", "two@example.com", "Two", "/signup"),
        ],
        partition=0,
    )
    await publish(
        bootstrap,
        topic,
        [
            created("user-4", 1, "signup-4", "four@example.com", "Four", "/signup"),
            created("user-5", 1, "signup-5", "five@example.com", "Five", "/signup"),
            updated("user-5", 2, "profile-5", name="Fifi"),
        ],
        partition=1,
    )
    signup_3 = created("user-3", 1, "signup-3", "three@example.com", "Three", "/signup")
    await publish(
        bootstrap,
        topic,
        [
            created("user-6", 1, "signup-6", "six@example.com", "Six", "/signup"),
            updated("user-6", 2, "profile-1", name="Sixtus"),
            signup_3,
            updated("user-3", 2, "profile-3", name="Tre"),
            created("user-8", 1, "signup-8", "eight@example.com", "Eight", "/signup"),
            updated("user-3", 3, "profile-2", name="Trey"),
            deleted("user-6", 3, "accounts-6"),
            signup_3,  # 2:7, a duplicate of 2:2
            updated("user-6", 4, "profile-7", name="Late"),  # after its delete
        ],
        partition=2,
    )
    await drained(settings, database, {0: 2, 1: 3, 2: 9})
    fifteen_seconds_ago = int((time.time() - 15) * 1000)
    late = {
        1: [
            updated("user-4", 2, "profile-4", name="Fore"),
            updated("user-5", 3, "profile-9", name="Fin"),
        ],
        2: [updated("user-8", n, f"profile-8{n}", name=f"E{n}") for n in range(2, 6)],
    }
    for partition, messages in late.items():
        await publish(bootstrap, topic, messages, partition, timestamp_ms=fifteen_seconds_ago)
    return World(tool_env(settings), tmp, documented_names(settings))


@asynccontextmanager
async def storm_world(bootstrap: str, database: str, tmp: Path) -> AsyncIterator[World]:
    """Two partitions; on 0, two good records and then six poison ones in a row, with the
    storm guard at 3 in a row: the live service holds partition 0 at offset 5."""
    settings = await new_settings(bootstrap, database, partitions=2)
    poison = (b"p", b"not json at all", _structured())
    users = [created(f"a{n}", 1, f"a-{n}", f"a{n}@example.com", "A", "/storm") for n in (0, 1)]
    await publish(bootstrap, settings.kafka_topic, [*users, *[poison] * 6], partition=0)
    await publish(
        bootstrap,
        settings.kafka_topic,
        [created(f"b{n}", 1, f"b-{n}", f"b{n}@example.com", "B", "/storm") for n in range(10)],
        partition=1,
    )
    port = free_port()
    service = start_service_process(settings, HTTP_PORT=str(port), DLQ_MAX_CONSECUTIVE="3")
    try:

        async def held() -> bool:
            try:
                return await stored_offsets(database, settings.kafka_group_id) == {0: 5, 1: 10}
            except asyncpg.UndefinedTableError:  # the service has not migrated yet
                return False

        await eventually(held, timeout=40)
        yield World(tool_env(settings), tmp, documented_names(settings), http_port=port)
    finally:
        service.terminate()
        service.wait(30)


async def schema_behind_world(database: str, tmp: Path) -> World:
    await only_the_first_migration(database)
    return World(tool_env(DATABASE_URL=database), tmp)


def wrong_database_world(server_url: str, tmp: Path) -> World:
    return World(tool_env(DATABASE_URL=database_url(server_url, "usres")), tmp)


WORLDS = {"contract", "deadletters", "lag", "storm", "schema-behind", "wrong-database"}


async def test_the_contract_examples(tmp_path: Path) -> None:
    run_examples(contract_world(tmp_path), "contract")


async def test_the_dead_letter_examples(
    bootstrap_servers: str, database: str, tmp_path: Path
) -> None:
    world = await deadletters_world(bootstrap_servers, database, tmp_path)
    await asyncio.to_thread(run_examples, world, "deadletters")


async def test_the_status_and_event_examples(
    bootstrap_servers: str, database: str, tmp_path: Path
) -> None:
    world = await lag_world(bootstrap_servers, database, tmp_path)
    await asyncio.to_thread(run_examples, world, "lag")


async def test_the_storm_guard_examples(
    bootstrap_servers: str, database: str, tmp_path: Path
) -> None:
    async with storm_world(bootstrap_servers, database, tmp_path) as world:
        await asyncio.to_thread(run_examples, world, "storm")


async def test_the_schema_examples(database: str, server_url: str, tmp_path: Path) -> None:
    await asyncio.to_thread(
        run_examples, await schema_behind_world(database, tmp_path), "schema-behind"
    )
    await asyncio.to_thread(
        run_examples, wrong_database_world(server_url, tmp_path), "wrong-database"
    )
