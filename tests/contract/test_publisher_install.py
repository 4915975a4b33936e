"""The contract as publishers get it: ``pip install ./schemas`` in a fresh virtual
environment gives the models, the builders, the JSON Schemas and the validator, and none
of the consumer's dependencies."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

from tests.contract.freshenv import fresh_venv, pip_install

SCHEMAS = Path(__file__).parents[2] / "schemas"

# Run inside the fresh environment: what a publisher does with the package.
PUBLISHER = """
import importlib.util, json
from importlib.resources import files
from user_events_schemas import UserCreated, binary_record, build_event, structured_record

event = build_event("user.created", "u-1", {"email": "ada@example.com", "name": "Ada"},
                    source="/signup-service", sequence=1)
key, value, headers = structured_record(event)
binary_record(event)
schema = json.loads((files("user_events_schemas") / "json" / "user.created.schema.json").read_text())
print(json.dumps({
    "user_id": UserCreated.model_validate_json(value).user_id,
    "schema_id": schema["$id"],
    "importable": [m for m in ("aiokafka", "asyncpg", "orjson", "consumer")
                   if importlib.util.find_spec(m) is not None],
}))
"""


def test_publishers_install_the_contract_alone_and_validate_events_with_it(
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    # A copy: an in-tree build would leave build/ and egg-info in the checkout.
    source = shutil.copytree(
        SCHEMAS,
        tmp_path / "schemas",
        ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"),
    )
    venv = tmp_path / "venv"
    python = fresh_venv(venv)
    pip_install(python, source)  # `pip install ./schemas`
    installed = time.monotonic() - started

    # From the publisher's directory: the checkout's own consumer/ must not be on the path.
    used = subprocess.run(
        [python, "-c", PUBLISHER],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert json.loads(used.stdout) == {
        "user_id": "u-1",
        "schema_id": "https://schemas.user-events.example/user.created.schema.json",
        "importable": [],  # not aiokafka, not asyncpg, nothing of the consumer
    }

    events = tmp_path / "events.jsonl"
    valid = {
        "specversion": "1.0",
        "id": "e-1",
        "source": "/signup-service",
        "type": "user.updated",
        "subject": "u-1",
        "time": "2026-11-25T10:15:30Z",
        "data": {"name": "Ada"},
    }
    events.write_text(json.dumps(valid) + "\n" + json.dumps(valid | {"data": {}}) + "\n")
    checked = subprocess.run(
        [venv / "bin" / "user-events-schemas", "validate", events],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 1, checked.stderr
    assert checked.stdout.splitlines() == [
        f"{events}:1: valid",
        f'{events}:2: invalid [{{"loc":"data","type":"value_error"}}]',
    ]
    print(f"fresh environment with the contract installed in {installed:.1f} s")
