"""The Layout section's promises, checked: imports only go down the floors (core, edges,
pipeline, tools), the consumer never imports the development tools, and no module or
class outgrows the size the README names."""

from __future__ import annotations

import ast
from pathlib import Path

CONSUMER = Path(__file__).resolve().parents[2] / "consumer"
FLOORS = ("core", "edges", "pipeline", "tools")
MODULE_LINES, CLASS_LINES = 400, 250
# One class is long by nature, and so its module: a field per knob, each documented.
LONG_CLASSES, LONG_MODULES = {"Settings"}, {"settings.py"}


def modules() -> list[Path]:
    return sorted(CONSUMER.rglob("*.py"))


def imported(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def floor_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "consumer" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in FLOORS else None


def test_imports_only_go_down_the_floors_and_never_to_the_devtools() -> None:
    upward = []
    for path in modules():
        here = path.relative_to(CONSUMER).parts[0]
        for module in imported(path):
            assert not module.startswith("user_events_devtools"), path
            there = floor_of(module)
            if here in FLOORS and there is not None and FLOORS.index(there) > FLOORS.index(here):
                upward.append(f"{path.relative_to(CONSUMER)} imports {module}")
    assert not upward, upward
    # And core imports nothing of the package but core.
    core = [
        (path.name, module)
        for path in (CONSUMER / "core").glob("*.py")
        for module in imported(path)
        if module.startswith("consumer.") and floor_of(module) != "core"
    ]
    assert not core, core


def test_no_module_or_class_outgrows_the_layouts_limits() -> None:
    too_long = []
    for path in modules():
        text = path.read_text(encoding="utf-8")
        if len(text.splitlines()) > MODULE_LINES and path.name not in LONG_MODULES:
            too_long.append(f"{path.relative_to(CONSUMER)}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef) and node.name not in LONG_CLASSES:
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > CLASS_LINES:
                    too_long.append(f"{path.relative_to(CONSUMER)}: class {node.name}, {length}")
    assert not too_long, too_long
