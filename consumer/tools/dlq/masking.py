"""Personal data masked for display: emails anywhere, and the values of personal fields. Pure."""

from __future__ import annotations

import json
import re
from typing import Any

from consumer.core.records import Headers

_EMAIL = re.compile(r"([A-Za-z0-9._%+\-]+)@([A-Za-z0-9.\-]+\.[A-Za-z]{2,})")
_PERSONAL_KEYS = {"email", "name", "first_name", "last_name", "display_name", "phone", "address"}
_MAX_SHOWN = 300


def mask_email(local: str, domain: str) -> str:
    tld = domain.rsplit(".", 1)[-1]
    return f"{local[:1]}***@***.{tld}"


def mask_text(text: str) -> str:
    """Every email in free text masked."""
    return _EMAIL.sub(lambda m: mask_email(m[1], m[2]), text)


def mask_personal(value: str) -> str:
    """A value of a personal field (a name, an email): its first character only."""
    if _EMAIL.fullmatch(value):
        return mask_text(value)
    return f"{value[:1]}***" if value else value


def mask_json(value: Any, key: str | None = None) -> Any:
    """A JSON document with personal fields masked and emails in any string masked."""
    if isinstance(value, dict):
        return {k: mask_json(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_json(v, key) for v in value]
    if isinstance(value, str):
        if key is not None and key.lower() in _PERSONAL_KEYS:
            return mask_personal(value)
        return mask_text(value)
    return value


def mask_bytes(raw: bytes | None) -> str | None:
    """A key or value for a listing: JSON with personal fields masked, else masked text,
    cut at 300 characters."""
    shown = show_bytes(raw)
    if shown is None:
        return None
    return shown if len(shown) <= _MAX_SHOWN else shown[:_MAX_SHOWN] + "..."


def show_bytes(raw: bytes | None, *, reveal: bool = False, indent: int | None = None) -> str | None:
    """A key or value in full: JSON (indented by ``indent``) with personal fields masked,
    else text with emails masked; as it is with ``reveal``."""
    if raw is None:
        return None
    try:
        document = json.loads(raw)
        return json.dumps(
            document if reveal else mask_json(document), ensure_ascii=False, indent=indent
        )
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        text = raw.decode("utf-8", "replace")
        return text if reveal else mask_text(text)


def masked_headers(headers: Headers, *, reveal: bool = False) -> list[list[str]]:
    """Headers as text, emails in their values masked unless ``reveal``."""
    shown = []
    for name, value in headers:
        text = value.decode("utf-8", "replace") if value is not None else ""
        shown.append([name, text if reveal else mask_text(text)])
    return shown
