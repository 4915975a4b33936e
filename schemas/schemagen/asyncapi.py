"""The AsyncAPI 3.0 document of the service's topics, generated from the contract.

``python -m schemagen.asyncapi [FILE]`` writes it, as YAML by PyYAML (``make schemas``
writes ``schemas/asyncapi.yaml``; without FILE it goes to standard output). The payloads
are the generated JSON Schema files, embedded under ``components/schemas`` so that the
document stands alone; the dead-letter headers come from ``deadletter``.
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

import yaml
from user_events_schemas import DLQ_REDRIVE_COUNT
from user_events_schemas.models import MODELS

from schemagen import deadletter
from schemagen.asyncapi_records import binary_headers_schema, examples
from schemagen.jsonschemas import render_schemas

DISTRIBUTION = "user-events-schemas"
KAFKA_BINDING = "0.5.0"
SCHEMAS = "#/components/schemas/"
_DEFS = "#/$defs/"
_WIDTH = 96

Schema = dict[str, Any]


def document() -> dict[str, Any]:
    """The AsyncAPI document, as JSON-ready data."""
    files = render_schemas()
    schemas: dict[str, Schema] = {}
    messages: dict[str, Any] = {}
    for event_type, model in MODELS.items():
        generated = json.loads(files[f"{event_type}.schema.json"])
        event = _embed(generated, schemas)
        name = model.__name__
        schemas[name] = event
        schemas[f"{name}BinaryHeaders"] = binary_headers_schema(event_type, event)
        messages.update(_event_messages(event_type, name, event, generated.get("$id")))
    schemas["UserId"] = _user_id_schema(schemas)
    schemas["StructuredHeaders"] = _STRUCTURED_HEADERS
    schemas.update(deadletter.SCHEMAS)
    messages["deadLetter"] = _DEAD_LETTER
    event_messages = [name for name in messages if name != "deadLetter"]
    return {
        "asyncapi": "3.0.0",
        "info": _info(),
        "servers": _SERVERS,
        "channels": {
            "userEvents": _channel("user-events", _USER_EVENTS, event_messages),
            "deadLetters": {
                **_channel("user-events.dlq", _DEAD_LETTERS, ["deadLetter"]),
                "bindings": {
                    "kafka": {
                        # The consumer's dead letters may have no key: compaction refuses them.
                        "topicConfiguration": {"cleanup.policy": ["delete"]},
                        "bindingVersion": KAFKA_BINDING,
                    }
                },
            },
        },
        "operations": _operations(event_messages),
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "messages": messages,
            "messageBindings": {
                "keyedByUser": {
                    "kafka": {"key": {"$ref": f"{SCHEMAS}UserId"}, "bindingVersion": KAFKA_BINDING}
                },
                "originalKey": {
                    "kafka": {
                        "key": {
                            "description": (
                                "The rejected record's key, byte for byte; absent when "
                                "dlq.dropped names key."
                            )
                        },
                        "bindingVersion": KAFKA_BINDING,
                    }
                },
            },
        },
    }


def render() -> str:
    """The document as YAML text, as committed in ``schemas/asyncapi.yaml``."""
    return to_yaml(document())


def to_yaml(data: Any) -> str:
    """JSON-shaped ``data`` as block-style YAML, its keys in their order."""
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=_WIDTH)


def _embed(schema: Schema, components: dict[str, Schema]) -> Schema:
    """``schema`` without its ``$defs``, which join ``components`` (one name, one schema),
    its references pointing there. ``$schema`` and ``$id`` go: an embedded schema is read
    as part of the document (``$id`` would move the base of its references)."""
    schema = _point_at_components(schema)
    for name, definition in schema.pop("$defs", {}).items():
        if components.setdefault(name, definition) != definition:
            raise ValueError(f"two different JSON Schemas are both named {name}")
    schema.pop("$schema", None)
    schema.pop("$id", None)
    return schema


def _point_at_components(value: Any) -> Any:
    if isinstance(value, list):
        return [_point_at_components(item) for item in value]
    if not isinstance(value, dict):
        return value
    copied = {key: _point_at_components(item) for key, item in value.items()}
    ref = copied.get("$ref")
    if isinstance(ref, str):
        if not ref.startswith(_DEFS):
            raise ValueError(f"a reference the document cannot follow: {ref}")
        copied["$ref"] = SCHEMAS + ref[len(_DEFS) :]
    return copied


def _user_id_schema(schemas: dict[str, Schema]) -> Schema:
    subject = dict(schemas["UserCreated"]["properties"]["subject"])
    subject.pop("title", None)
    subject["description"] = (
        "The user id, the event's subject, as UTF-8. Publishers key every event with it, so "
        "that the events of a user share a partition and arrive in order; the consumer "
        "does not depend on the key for correctness."
    )
    return subject


def _event_messages(
    event_type: str, name: str, event: Schema, schema_id: str | None
) -> dict[str, Any]:
    """The structured-mode and the binary-mode message of ``event_type``."""
    file = f"user_events_schemas/json/{event_type}.schema.json"
    if schema_id:
        file += f"` (`$id` {schema_id})"
    else:
        file += "`"
    structured, binary = examples(event_type)
    common = {"bindings": {"$ref": "#/components/messageBindings/keyedByUser"}}
    structured_id, binary_id = f"{_camel(name)}Structured", f"{_camel(name)}Binary"
    return {
        structured_id: {
            "name": structured_id,
            "title": f"{event_type}, structured mode",
            "summary": event.get("description", event_type),
            "description": (
                "CloudEvents Kafka binding, structured mode: the value is the whole event as "
                f"one JSON object. Its payload schema is the JSON Schema file `{file} of the "
                f"{DISTRIBUTION} package."
            ),
            "contentType": "application/cloudevents+json",
            "headers": {"$ref": f"{SCHEMAS}StructuredHeaders"},
            "payload": {"$ref": f"{SCHEMAS}{name}"},
            "correlationId": {
                "description": "The CloudEvents id, unique per source.",
                "location": "$message.payload#/id",
            },
            **common,
            "examples": [structured],
        },
        binary_id: {
            "name": binary_id,
            "title": f"{event_type}, binary mode",
            "summary": event.get("description", event_type),
            "description": (
                "CloudEvents Kafka binding, binary mode: the attributes travel as ce_* "
                "headers and the value is the event's data as JSON"
                + (", or empty." if event_type == "user.deleted" else ".")
            ),
            "contentType": "application/json",
            "headers": {"$ref": f"{SCHEMAS}{name}BinaryHeaders"},
            "payload": event["properties"]["data"],
            "correlationId": {
                "description": "The CloudEvents id, unique per source.",
                "location": "$message.header#/ce_id",
            },
            **common,
            "examples": [binary],
        },
    }


def _camel(name: str) -> str:
    return name[0].lower() + name[1:]


def _channel(address: str, about: dict[str, str], messages: list[str]) -> dict[str, Any]:
    return {
        "address": address,
        **about,
        "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in messages},
    }


def _operations(event_messages: list[str]) -> dict[str, Any]:
    def refs(channel: str, names: list[str]) -> list[dict[str, str]]:
        return [{"$ref": f"#/channels/{channel}/messages/{name}"} for name in names]

    group = {
        "kafka": {
            "groupId": {
                "type": "string",
                "default": "user-events-consumer",
                "description": "KAFKA_GROUP_ID",
            },
            "bindingVersion": KAFKA_BINDING,
        }
    }
    return {
        "receiveUserEvents": {
            "action": "receive",
            "channel": {"$ref": "#/channels/userEvents"},
            "title": "Project user events into PostgreSQL",
            "summary": (
                "Validates each record against the contract and applies it to the users "
                "table, exactly once in effect; a record that cannot be applied becomes a "
                "dead letter."
            ),
            "bindings": group,
            "messages": refs("userEvents", event_messages),
        },
        "sendDeadLetters": {
            "action": "send",
            "channel": {"$ref": "#/channels/deadLetters"},
            "title": "Dead-letter a rejected record",
            "summary": (
                "Every record that cannot be applied, with its key, value and headers byte "
                "for byte and the dlq.* provenance headers; acknowledged by the broker "
                "before the consumer's offset moves past the record."
            ),
            "messages": refs("deadLetters", ["deadLetter"]),
        },
        "receiveDeadLettersToRedrive": {
            "action": "receive",
            "channel": {"$ref": "#/channels/deadLetters"},
            "title": "Read dead letters to redrive (user-events-consumer dlq redrive)",
            "summary": "An operator's tool, run on demand: reads the dead letters chosen.",
            "messages": refs("deadLetters", ["deadLetter"]),
        },
        "sendRedrivenRecords": {
            "action": "send",
            "channel": {"$ref": "#/channels/userEvents"},
            "title": "Re-publish redriven records (user-events-consumer dlq redrive)",
            "summary": (
                "Each redriven record goes back to its dlq.original.topic with its key, "
                "value and own headers, without the dlq.* ones, plus dlq.redrive.count."
            ),
            "messages": refs("userEvents", event_messages),
        },
    }


def _info() -> dict[str, Any]:
    return {
        "title": "user-events",
        "version": version(DISTRIBUTION),
        "description": (
            "User events as CloudEvents 1.0 on Kafka, as read by user-events-consumer, "
            "which projects them into PostgreSQL, and its dead letters. Generated from the "
            f"models of the {DISTRIBUTION} package (make schemas); "
            "the payload schemas are its JSON Schema files."
        ),
    }


_SERVERS = {
    "kafka": {
        "host": "{bootstrapServer}",
        "protocol": "kafka",
        "title": "The Kafka cluster",
        "description": (
            "The brokers of KAFKA_BOOTSTRAP_SERVERS. KAFKA_SECURITY_PROTOCOL chooses "
            "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)."
        ),
        "variables": {
            "bootstrapServer": {
                "default": "localhost:9092",
                "description": "A broker's host and port.",
            }
        },
    }
}

_USER_EVENTS = {
    "title": "User events",
    "description": (
        "The topic named by KAFKA_TOPIC (user-events unless set). A record is in binary mode "
        "when it has a ce_specversion header and no content-type starting with "
        "application/cloudevents (any case, any parameters); otherwise it is in structured "
        "mode. JSON is RFC 8259 JSON in both modes: NaN, Infinity, invalid UTF-8 and lone "
        "surrogates make a record undecodable. Unknown CloudEvents extension attributes and "
        "unknown fields inside data are ignored."
    ),
}

_DEAD_LETTERS = {
    "title": "Dead letters",
    "description": (
        "The topic named by KAFKA_DLQ_TOPIC (user-events.dlq unless set): every record of "
        "user-events that the consumer could not apply, one dead letter each while the "
        "topic answers. A batch retried after some of its dead letters were acknowledged "
        "sends those again, with the same dlq.original.* headers."
    ),
}

_STRUCTURED_HEADERS: Schema = {
    "type": "object",
    "description": "Headers of a structured-mode record; others are ignored.",
    "properties": {
        "content-type": {
            "type": "string",
            "description": (
                "application/cloudevents+json. Optional: a record without a ce_specversion "
                "header is read as structured whatever its content type."
            ),
            "examples": ["application/cloudevents+json"],
        },
        DLQ_REDRIVE_COUNT: deadletter.OPTIONAL_HEADERS[DLQ_REDRIVE_COUNT],
    },
}

_DEAD_LETTER = {
    "name": "deadLetter",
    "title": "A record the consumer could not apply",
    "summary": "The rejected record byte for byte, plus the dlq.* provenance headers.",
    "description": (
        "Key, value and headers of the record unchanged, followed by the dlq.* headers. A "
        "dead letter too large to send loses the record's value, then its key, then its "
        "own headers, and dlq.dropped names what went. Read them with "
        "`user-events-consumer dlq list` and `dlq show`; `dlq redrive` re-publishes them."
    ),
    "headers": {"$ref": f"{SCHEMAS}DeadLetterHeaders"},
    "payload": {
        "description": (
            "The rejected record's value, byte for byte: not necessarily JSON, nor valid "
            "UTF-8. Empty when dlq.dropped names value or dlq.value is set."
        )
    },
    "bindings": {"$ref": "#/components/messageBindings/originalKey"},
}


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    text = render()
    if not args:
        sys.stdout.write(text)
        return
    Path(args[0]).write_text(text)
    print(f"wrote {args[0]}")


if __name__ == "__main__":
    main()
