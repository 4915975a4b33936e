"""The publishers' validator, ``user-events-schemas validate``: the consumer's verdict on
each event of a file, without the consumer."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from user_events_schemas import build_event
from user_events_schemas.cli import main
from user_events_schemas.rejections import FieldError, Reason
from user_events_schemas.validate import check, events_in, verdict

from consumer.core.decode import decode
from consumer.core.records import KafkaRecord, Rejection

VALID = build_event(
    "user.created", "u-42", {"email": "ada@example.com", "name": "Ada"}, source="/signup"
)
BAD_TIME = VALID | {"time": "yesterday"}


def lines(*events: object) -> bytes:
    return b"".join(json.dumps(event).encode() + b"\n" for event in events)


@pytest.mark.parametrize(
    "value",
    [
        json.dumps(VALID).encode(),
        json.dumps(BAD_TIME | {"data": {"email": "nope", "name": ""}}).encode(),
        json.dumps(VALID | {"type": "user.renamed"}).encode(),
        json.dumps(VALID | {"type": "user.updated", "data": {}}).encode(),
        json.dumps(VALID | {"sequence": 1.5}).encode(),
        b'{"specversion": NaN}',
        b"[1]",
        b"{not json",
        b'{"id": "\xff"}',
    ],
)
def test_the_validator_gives_the_reason_and_errors_the_consumer_dead_letters_with(
    value: bytes,
) -> None:
    consumer = decode(KafkaRecord("t", 0, 0, 0, None, value, ()), 10**6)
    ours = verdict(value)
    if isinstance(consumer, Rejection):
        assert ours is not None and (ours.reason, ours.errors) == (
            consumer.reason,
            consumer.errors,
        )
    else:
        assert ours is None


def test_a_string_postgresql_cannot_store_is_refused_as_the_store_refuses_it() -> None:
    rejection = verdict(json.dumps(VALID | {"subject": "u\x00"}).encode())
    assert rejection is not None and rejection.reason is Reason.INVALID
    assert rejection.errors == (FieldError("", "not_storable"),)


def test_a_file_is_one_event_an_array_of_events_or_json_lines() -> None:
    one = json.dumps(VALID, indent=2).encode()
    assert events_in(one, "f") == [("f", one)]
    array = b'[\n  {"a": 1},\n  {"b": [2, 3]} ,{"c": NaN}\n]'
    assert events_in(array, "f") == [
        ("f[0]", b'{"a": 1}'),
        ("f[1]", b'{"b": [2, 3]}'),
        ("f[2]", b'{"c": NaN}'),  # as written: the consumer refuses NaN, so must we
    ]
    assert events_in(b"[]", "f") == []
    jsonl = b'{"a": 1}\r\n\n  \n{"b": 2}\n{oops\n'
    assert events_in(jsonl, "f") == [
        ("f:1", b'{"a": 1}\r'),
        ("f:4", b'{"b": 2}'),
        ("f:5", b"{oops"),
    ]


def test_json_lines_with_an_invalid_utf8_line_judge_each_line_alone() -> None:
    checked = check(lines(VALID) + b'{"id": "\xff"}\n' + lines(VALID), "f")
    assert [c.where for c in checked] == ["f:1", "f:2", "f:3"]
    assert [c.rejection is None for c in checked] == [True, False, True]
    rejection = checked[1].rejection
    assert rejection is not None and rejection.reason is Reason.UNDECODABLE


def test_validate_prints_a_line_per_event_and_exits_1_when_one_would_be_dead_lettered(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(lines(VALID, BAD_TIME, VALID | {"type": "user.renamed"}))
    assert main(["validate", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        f"{path}:1: valid",
        f'{path}:2: invalid [{{"loc":"time","type":"time_format"}}]',
        f'{path}:3: unknown_type [{{"loc":"type","type":"union_tag_invalid"}}]',
    ]
    assert err == "3 events: 1 valid, 2 would be dead-lettered\n"


def test_validate_exits_0_when_every_event_is_valid_and_reads_standard_input(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stdin = SimpleNamespace(buffer=io.BytesIO(json.dumps([VALID]).encode()))
    monkeypatch.setattr(sys, "stdin", stdin)
    assert main(["validate", "-"]) == 0
    assert capsys.readouterr().out == "<stdin>[0]: valid\n"


def test_validate_json_output_is_an_object_per_event(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "events.json"
    path.write_text(json.dumps([VALID, BAD_TIME]))
    assert main(["validate", "--json", str(path)]) == 1
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert out == [
        {"event": f"{path}[0]", "valid": True},
        {
            "event": f"{path}[1]",
            "valid": False,
            "reason": "invalid",
            "errors": [{"loc": "time", "type": "time_format"}],
        },
    ]


@pytest.mark.parametrize("name", ["missing.json", ".", "empty.json", "blank.jsonl"])
def test_validate_exits_2_for_a_file_it_cannot_read_or_that_holds_no_event(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty.json").write_text("[]")
    (tmp_path / "blank.jsonl").write_text("\n \n")
    assert main(["validate", str(tmp_path / name)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1 and "Traceback" not in err


def test_the_installed_console_script_validates_a_file(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(lines(VALID, VALID | {"type": "user.updated", "data": {}}))
    script = Path(sys.executable).with_name("user-events-schemas")
    result = subprocess.run(
        [script, "validate", path], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 1
    assert (
        result.stdout.splitlines()[1]
        == f'{path}:2: invalid [{{"loc":"data","type":"value_error"}}]'
    )


def test_the_validator_imports_nothing_of_the_consumer() -> None:
    code = (
        "import sys, user_events_schemas.cli;"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'consumer', 'aiokafka', 'asyncpg', 'orjson'}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout == "[]\n"
