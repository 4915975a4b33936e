"""schemas/asyncapi.yaml, checked by the official AsyncAPI parser (@asyncapi/parser): the
AsyncAPI 3.0 schema, the bindings' schemas, every reference and the semantic rules. Broken
copies prove that the check can fail."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from schemagen.asyncapi import to_yaml

from tests.asyncapi.parser import ERROR, ROOT, installed_parser, parse, problems

DOCUMENT = ROOT / "schemas" / "asyncapi.yaml"
EVENT_MESSAGES = [
    f"user{kind}{mode}"
    for kind in ("Created", "Updated", "Deleted")
    for mode in ("Structured", "Binary")
]


@pytest.fixture(scope="module")
def parser_modules() -> Path:
    return installed_parser()


def test_the_official_parser_reads_the_document_with_no_error_nor_warning(
    parser_modules: Path,
) -> None:
    [result] = parse(parser_modules, DOCUMENT)
    assert problems(result) == []
    assert result["operations"] == {
        "receiveUserEvents": {
            "action": "receive",
            "channels": ["user-events"],
            "messages": EVENT_MESSAGES,
        },
        "sendDeadLetters": {
            "action": "send",
            "channels": ["user-events.dlq"],
            "messages": ["deadLetter"],
        },
        "receiveDeadLettersToRedrive": {
            "action": "receive",
            "channels": ["user-events.dlq"],
            "messages": ["deadLetter"],
        },
        "sendRedrivenRecords": {
            "action": "send",
            "channels": ["user-events"],
            "messages": EVENT_MESSAGES,
        },
    }


def _dangling_reference(doc: dict[str, Any]) -> None:
    doc["components"]["schemas"]["UserCreated"]["properties"]["data"]["$ref"] += "Typo"


def _message_of_another_channel(doc: dict[str, Any]) -> None:
    doc["operations"]["sendDeadLetters"]["messages"] = [
        {"$ref": "#/channels/userEvents/messages/userCreatedBinary"}
    ]


def _payload_schema_of_an_unknown_type(doc: dict[str, Any]) -> None:
    doc["components"]["schemas"]["UserCreated"]["type"] = "record"


def _no_version(doc: dict[str, Any]) -> None:
    del doc["info"]["version"]


# Each breakage, and the error (code, path) the parser must report for it.
BREAKAGES: dict[str, tuple[Callable[[dict[str, Any]], None], tuple[str, str]]] = {
    "dangling reference": (
        _dangling_reference,
        ("invalid-ref", "components/schemas/UserCreated/properties/data/$ref"),
    ),
    "message of another channel": (
        _message_of_another_channel,
        (
            "asyncapi3-operation-messages-from-referred-channel",
            "operations/sendDeadLetters/messages/0",
        ),
    ),
    "payload schema of an unknown type": (
        _payload_schema_of_an_unknown_type,
        ("asyncapi-document-resolved", "components/schemas/UserCreated/type"),
    ),
    "no version": (_no_version, ("asyncapi-document-resolved", "info")),
}


def test_the_official_parser_refuses_broken_copies_of_the_document_saying_why(
    parser_modules: Path, tmp_path: Path
) -> None:
    copies = []
    for number, (breakage, _) in enumerate(BREAKAGES.values()):
        doc = yaml.safe_load(DOCUMENT.read_text())
        breakage(doc)
        copies.append(tmp_path / f"broken-{number}.yaml")
        copies[-1].write_text(to_yaml(doc))
    results = parse(parser_modules, *copies)
    for (name, (_, expected)), result in zip(BREAKAGES.items(), results, strict=True):
        errors = [(d["code"], d["path"]) for d in problems(result) if d["severity"] == ERROR]
        assert expected in errors, f"{name}: {result['diagnostics']}"
        assert result["operations"] is None, name
