"""The pure parts of `dev`: demo events a newcomer can follow (each its own id, poison
included), a port that stays put across restarts, one dev per data directory, and dead
letters summed up instead of one line each."""

from __future__ import annotations

import itertools
import logging
import random
import re
import socket
from pathlib import Path

import pytest
from user_events_devtools.demo import demo_messages
from user_events_devtools.dev import DeadLetterSummary, _lock, _port_or_free, _previous_port

from consumer.core.decode import decode
from consumer.core.identity import event_key
from consumer.core.records import KafkaRecord, Rejection
from consumer.edges.kafka import _log_no_idempotence
from consumer.settings import Settings

_UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def test_every_demo_event_poison_included_has_its_own_id() -> None:
    messages = list(itertools.islice(demo_messages(random.Random(7)), 3000))
    # a duplicate is the same event redelivered
    distinct = list(dict.fromkeys((key, value, tuple(hs)) for key, value, hs in messages))
    ids: list[str] = []
    reasons: set[str] = set()
    for key, value, headers in distinct:
        record = KafkaRecord("t", 0, 0, 0, key, value, tuple(headers))
        decoded = decode(record, 10**6)
        if isinstance(decoded, Rejection):
            reasons.add(str(decoded.reason))
        named = event_key(record)
        if named is not None:
            ids.append(named[1])
        else:  # not JSON: its id is in its text, for a reader of the dead-letter topic
            found = _UUID.search(value or b"")
            assert found, value
            ids.append(found[0].decode())
    assert len(distinct) < len(messages)  # duplicates are in the stream
    assert len(set(ids)) == len(ids) == len(distinct)
    assert {"undecodable", "unknown_type", "invalid"} <= reasons


def test_a_port_left_in_time_wait_is_still_the_preferred_one() -> None:
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        served, _ = listener.accept()
        served.close()  # the server closes first: its side lingers in TIME_WAIT
        client.close()
    assert _port_or_free(port) == port
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("127.0.0.1", port))
        busy.listen()
        assert _port_or_free(port) != port  # something listens: another port


def test_the_port_of_the_last_run_is_preferred(tmp_path: Path) -> None:
    assert _previous_port(tmp_path) is None
    (tmp_path / "postgresql.auto.conf").write_text("port = 41725\nlisten_addresses = 'x'\n")
    assert _previous_port(tmp_path) == 41725


def test_one_dev_per_data_directory(tmp_path: Path) -> None:
    first = _lock(tmp_path / ".dev")
    assert not isinstance(first, str)
    try:
        refusal = _lock(tmp_path / ".dev")
        assert isinstance(refusal, str)
        assert "\n" not in refusal
        assert refusal.startswith("[dev] refused: another dev (pid ")
        assert str(tmp_path / ".dev") in refusal
    finally:
        first.close()
    again = _lock(tmp_path / ".dev")  # released with its file
    assert not isinstance(again, str)
    again.close()


def test_dead_letters_are_summed_up_by_reason_and_other_lines_pass() -> None:
    summary = DeadLetterSummary()
    logger = logging.getLogger("test.dev.summary")
    logger.addFilter(summary)
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    logger.addHandler(handler)
    logger.propagate = False
    try:
        for reason in ["invalid", "undecodable", "invalid", "unknown_type", "invalid"]:
            logger.warning("record dead-lettered", extra={"reason": reason})
        logger.warning("something else")
    finally:
        logger.removeFilter(summary)
        logger.removeHandler(handler)
    assert seen == ["something else"]
    assert summary.take() == "[dev] dead-lettered 5: invalid 3, undecodable 1, unknown_type 1"
    assert summary.take() is None  # counted per interval


@pytest.mark.parametrize(
    ("servers", "level"),
    [
        ("127.0.0.1:19092", logging.DEBUG),  # make dev's embedded broker
        ("localhost:9092,127.0.0.1:9093", logging.DEBUG),
        ("kafka-1.internal:9092,127.0.0.1:9092", logging.WARNING),
        ("kafka.example.com:9092", logging.WARNING),
    ],
)
def test_no_idempotence_is_a_warning_only_for_a_remote_broker(
    servers: str, level: int, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(kafka_bootstrap_servers=servers, database_url="postgresql://x@y/z")
    with caplog.at_level(logging.DEBUG, logger="consumer.edges.kafka"):
        _log_no_idempotence(settings)
    [record] = caplog.records
    assert record.levelno == level
    assert "InitProducerId" in record.getMessage()
    if level == logging.WARNING:
        assert "KAFKA_ENABLE_IDEMPOTENCE=false" in record.getMessage()  # what to do about it
