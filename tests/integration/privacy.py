"""Helpers for the personal-data tests: canary values, and a scan of every column of the
service's database that can hold text for them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from user_events_schemas.builder import build_event

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SOURCE = "/privacy-tests"

# Every column type a person's email or name could sit in, whole or inside a document.
_TEXT_TYPES = ("text", "character varying", "character", "json", "jsonb", "ARRAY", "USER-DEFINED")


@dataclass(frozen=True)
class Person:
    """A user whose email and name are canaries: unique strings a scan can look for."""

    user_id: str
    email: str
    name: str

    @classmethod
    def new(cls, label: str) -> Person:
        tag = uuid.uuid4().hex[:12]
        return cls(f"{label}-{tag}", f"canary.{tag}@example.com", f"Canary {tag}")

    def renamed(self) -> Person:
        """The same user with another email and name (also canaries)."""
        other = Person.new("x")
        return Person(self.user_id, other.email, other.name)

    @property
    def canaries(self) -> tuple[str, str]:
        return (self.email, self.name)


def event(
    type: str, who: Person, seq: int, data: dict[str, Any] | None, event_id: str | None = None
) -> dict[str, Any]:
    return build_event(
        type,
        who.user_id,
        data,
        source=SOURCE,
        sequence=seq,
        event_id=event_id,
        time=T0 + timedelta(seconds=seq),
    )


def created(who: Person, seq: int) -> dict[str, Any]:
    return event("user.created", who, seq, {"email": who.email, "name": who.name})


def updated(who: Person, seq: int) -> dict[str, Any]:
    return event("user.updated", who, seq, {"email": who.email, "name": who.name})


def deleted(who: Person, seq: int) -> dict[str, Any]:
    return event("user.deleted", who, seq, None)


async def where_found(database: str, values: tuple[str, ...]) -> list[str]:
    """Every ``table.column`` of the public schema (each day of the log included) holding
    any of ``values``, whole or inside, in any case."""
    conn = await asyncpg.connect(database)
    try:
        columns = await conn.fetch(
            """
            SELECT c.table_name, c.column_name, c.udt_name FROM information_schema.columns AS c
            JOIN information_schema.tables AS t USING (table_schema, table_name)
            WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'
              AND (c.data_type = ANY($1::text[]) OR c.udt_name IN ('bytea', '_bytea'))
            """,
            list(_TEXT_TYPES),
        )
        assert any(row["table_name"] == "users" for row in columns)  # the scan sees tables
        # The scan reaches bytes too (a record kept byte for byte): printable ASCII stays
        # itself in the 'escape' encoding.
        assert any(row["udt_name"] == "bytea" for row in columns)
        patterns = [f"%{value}%" for value in values]
        found = []
        for row in columns:
            table, column = row["table_name"], row["column_name"]
            if row["udt_name"] == "bytea":
                text = f"encode(\"{column}\", 'escape')"
            elif row["udt_name"] == "_bytea":
                text = f"(SELECT string_agg(encode(v, 'escape'), ' ') FROM unnest(\"{column}\") v)"
            else:
                text = f'"{column}"::text'
            hits = await conn.fetchval(
                f'SELECT count(*) FROM "{table}" WHERE {text} ILIKE ANY($1::text[])', patterns
            )
            if hits:
                found.append(f"{table}.{column}")
        return sorted(found)
    finally:
        await conn.close()
