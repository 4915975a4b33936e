"""JSON-shaped data as block-style YAML, without a YAML library.

The contract depends on pydantic and email-validator only, and its AsyncAPI document is
YAML, the format AsyncAPI tools and readers expect. JSON data needs little of YAML:
mappings, sequences and five kinds of scalar. A string is written plain only when it
cannot be read as anything but that string (by YAML 1.1 and 1.2 readers alike), as a
literal block when it spans lines, as a folded block (wrapped) when it is long, and
double-quoted otherwise.
"""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Iterator
from typing import Any

# Starts with a letter, "_", "/" or "$" (no indicator, no number, no date), holds no
# ": ", " #" or flow indicator, ends without a space.
_PLAIN = re.compile(r"[A-Za-z_/$](?:[A-Za-z0-9_./$+()'\- ]*[A-Za-z0-9_./$+()'\-])?")
# Plain words a YAML 1.1 reader turns into booleans or null.
_RESERVED = frozenset({"y", "n", "yes", "no", "true", "false", "on", "off", "null"})
# What a quoted string escapes: all but YAML's printable characters, less tabs, line
# breaks (YAML 1.1 reads NEL, LS and PS as ones too) and the byte order mark.
_ESCAPED = re.compile(
    "[^\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]"
)


_WIDTH = 96


def dump(value: Any) -> str:
    """``value`` (dicts, lists, strings, numbers, booleans, None) as a YAML document."""
    if _is_block(value):
        return "\n".join(_block(value, 0)) + "\n"
    return _scalar(value, 0) + "\n"


def _is_block(value: Any) -> bool:
    return isinstance(value, dict | list) and len(value) > 0


def _block(value: dict[str, Any] | list[Any], indent: int) -> Iterator[str]:
    pad = " " * indent
    if isinstance(value, dict):
        for key, item in value.items():
            head = f"{pad}{_string(str(key), indent, key=True)}:"
            if _is_block(item):
                yield head
                yield from _block(item, indent + 2)
            else:
                yield f"{head} {_scalar(item, indent + 2)}"
        return
    for item in value:
        if _is_block(item):
            first, *rest = _block(item, indent + 2)
            yield f"{pad}- {first[indent + 2 :]}"
            yield from rest
        else:
            yield f"{pad}- {_scalar(item, indent + 2)}"


def _scalar(value: Any, indent: int) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        # YAML 1.1 reads an exponent without a fraction ("1e+20") as a string.
        number = json.dumps(value, allow_nan=False)
        return number if "." in number or "e" not in number else number.replace("e", ".0e")
    if isinstance(value, str):
        return _string(value, indent)
    if isinstance(value, dict | list):
        return "{}" if isinstance(value, dict) else "[]"
    raise TypeError(f"not JSON data: {type(value).__name__}")


def _string(text: str, indent: int, *, key: bool = False) -> str:
    if not key and indent > 0:
        pad = " " * indent
        if _fits_a_literal_block(text):
            return "|-\n" + "\n".join(pad + line if line else "" for line in text.split("\n"))
        folded = _folded_lines(text, _WIDTH - indent)
        if folded is not None:
            return ">-\n" + "\n".join(pad + line for line in folded)
    if _PLAIN.fullmatch(text) and text.lower() not in _RESERVED:
        return text
    return '"' + _ESCAPED.sub(_escape, text.replace("\\", "\\\\").replace('"', '\\"')) + '"'


def _fits_a_literal_block(text: str) -> bool:
    """Lines kept as they are: several of them, none that starts the block with a space
    (that would need an indentation indicator), nothing to escape, no trailing newline."""
    return (
        "\n" in text
        and not text.startswith((" ", "\n"))
        and not text.endswith("\n")
        and _ESCAPED.search(text.replace("\n", "")) is None
    )


def _folded_lines(text: str, width: int) -> list[str] | None:
    """``text`` wrapped at single spaces, which a folded block reads back as spaces; None
    when it is short, or holds what folding would not give back (line breaks, tabs,
    runs of spaces, a leading or trailing one, anything to escape)."""
    if len(text) <= width or _ESCAPED.search(text) or "  " in text or text != text.strip():
        return None
    lines = textwrap.wrap(text, max(width, 40), break_long_words=False, break_on_hyphens=False)
    return lines if len(lines) > 1 and " ".join(lines) == text else None


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code == 0x0A:
        return "\\n"
    if code == 0x09:
        return "\\t"
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"
