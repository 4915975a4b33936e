"""Generate the JSON Schema files from the models: ``python -m user_events_schemas.generate``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from user_events_schemas.models import MODELS, UserEvent

SCHEMA_DIR = Path(__file__).parent / "json"


def render_schemas() -> dict[str, str]:
    """File name -> JSON text of every schema file the contract ships."""
    schemas: dict[str, dict[str, Any]] = {
        f"{name}.schema.json": model.model_json_schema() for name, model in MODELS.items()
    }
    schemas["user-event.schema.json"] = TypeAdapter(UserEvent).json_schema()
    return {name: json.dumps(s, indent=2, sort_keys=True) + "\n" for name, s in schemas.items()}


def main() -> None:
    SCHEMA_DIR.mkdir(exist_ok=True)
    for name, text in render_schemas().items():
        (SCHEMA_DIR / name).write_text(text)
        print(f"wrote {SCHEMA_DIR / name}")


if __name__ == "__main__":
    main()
