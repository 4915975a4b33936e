"""Personal values sealed with their user's key (AES-256-GCM): the event log keeps them
only as ciphertext, and erasing a user destroys the key (crypto-shredding), which leaves
every log row of that user unreadable without touching one. Pure, but for the random
bytes a key and a nonce need.

A sealed value is ``nonce || ciphertext || tag`` of the JSON of the personal fields (the
``personal`` column of ``user_events``); the user id is the associated data, so a row's
ciphertext opens only as that user's. A value that does not open (its key destroyed, or
replaced when the user was deleted and created again) is erased.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
_NONCE_BYTES = 12


def new_key() -> bytes:
    """A fresh random key for one user."""
    return os.urandom(KEY_BYTES)


class Sealer:
    """Seals the personal values of many events, caching one cipher per key: a batch
    seals several events of a user with one key setup, and takes its nonces from one
    read of the system's random source."""

    def __init__(self, expected: int = 0) -> None:
        self._ciphers: dict[bytes, AESGCM] = {}
        self._nonces = os.urandom(_NONCE_BYTES * max(expected, 1))
        self._at = 0

    def seal(self, key: bytes, user_id: str, values: Mapping[str, Any]) -> bytes:
        cipher = self._ciphers.get(key)
        if cipher is None:
            cipher = self._ciphers[key] = AESGCM(key)
        at = self._at
        if at + _NONCE_BYTES > len(self._nonces):
            self._nonces, at = os.urandom(_NONCE_BYTES * 64), 0
        self._at = at + _NONCE_BYTES
        nonce = self._nonces[at : at + _NONCE_BYTES]
        return nonce + cipher.encrypt(nonce, orjson.dumps(values), user_id.encode())


def unseal(key: bytes | None, user_id: str, sealed: bytes) -> dict[str, Any] | None:
    """The personal values ``sealed`` holds, or None when ``key`` cannot open them (no
    key, or another user's or an older one: they are erased)."""
    if key is None:
        return None
    try:
        opened = AESGCM(key).decrypt(sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], user_id.encode())
    except (InvalidTag, ValueError):
        return None
    values = orjson.loads(opened)
    return values if isinstance(values, dict) else None
