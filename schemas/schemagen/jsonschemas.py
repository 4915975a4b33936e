"""Generate the JSON Schema files from the models: ``python -m schemagen.jsonschemas``.

Each file is a draft 2020-12 schema named by an ``$id`` under ``SCHEMA_BASE``, the file's
own name appended: ``https://schemas.user-events.example/user.created.schema.json`` for
``json/user.created.schema.json``. The ``$id`` is a name, not a location (``.example`` is
a reserved domain): validators find the files in the package. The schema of an event's
``data`` is named by an anchor in it, ``...user.created.schema.json#user.created.data``,
which is what a CloudEvent's ``dataschema`` may carry.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode, JsonSchemaValue
from pydantic_core import CoreSchema, core_schema
from user_events_schemas import UserEvent
from user_events_schemas.models import MODELS

SCHEMA_DIR = Path(__file__).parents[1] / "user_events_schemas" / "json"
"""Where the package ships the files."""
SCHEMA_BASE = "https://schemas.user-events.example/"
UNION_NAME = "user-event"


def schema_id(name: str) -> str:
    """The ``$id`` of the schema of ``name``: an event type, or ``user-event`` for any."""
    return f"{SCHEMA_BASE}{name}.schema.json"


class ContractJsonSchema(GenerateJsonSchema):
    """pydantic's generator, for schemas that stand alone: the dialect named, and no
    OpenAPI ``discriminator`` (a JSON Schema validator ignores it at best; ajv's strict
    mode refuses it). The union stays exact without it: each branch's ``type`` is a
    ``const``."""

    def generate(self, schema: CoreSchema, mode: JsonSchemaMode = "validation") -> JsonSchemaValue:
        return {"$schema": self.schema_dialect, **super().generate(schema, mode)}

    def tagged_union_schema(self, schema: core_schema.TaggedUnionSchema) -> JsonSchemaValue:
        json_schema = super().tagged_union_schema(schema)
        json_schema.pop("discriminator", None)
        return json_schema


def render_schemas() -> dict[str, str]:
    """File name -> JSON text of every schema file the contract ships."""
    schemas: dict[str, dict[str, Any]] = {
        name: model.model_json_schema(schema_generator=ContractJsonSchema)
        for name, model in MODELS.items()
    }
    schemas[UNION_NAME] = TypeAdapter(UserEvent).json_schema(schema_generator=ContractJsonSchema)
    return {
        f"{name}.schema.json": json.dumps(_named(schema, schema_id(name)), indent=2) + "\n"
        for name, schema in schemas.items()
    }


def _named(schema: dict[str, Any], id_: str) -> dict[str, Any]:
    """``schema`` with its ``$id``, after ``$schema`` at the top where readers look."""
    dialect = schema.pop("$schema")
    return {"$schema": dialect, "$id": id_, **schema}


def main() -> None:
    SCHEMA_DIR.mkdir(exist_ok=True)
    for name, text in render_schemas().items():
        (SCHEMA_DIR / name).write_text(text)
        print(f"wrote {SCHEMA_DIR / name}")


if __name__ == "__main__":
    main()
