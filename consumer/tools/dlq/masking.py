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
    """A key or value for display: JSON with personal fields masked, else masked text."""
    if raw is None:
        return None
    try:
        shown = json.dumps(mask_json(json.loads(raw)), ensure_ascii=False)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        shown = mask_text(raw.decode("utf-8", "replace"))
    return shown if len(shown) <= _MAX_SHOWN else shown[:_MAX_SHOWN] + "..."


def masked_headers(headers: Headers) -> list[list[str]]:
    return [
        [name, mask_text(value.decode("utf-8", "replace")) if value is not None else ""]
        for name, value in headers
    ]
