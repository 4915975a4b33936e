"""How the pool opens a connection to PostgreSQL, and tells a configuration mistake (a
database that does not exist, a role refused, TLS refused) from an outage."""

from __future__ import annotations

import asyncio
import struct
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg

from consumer.edges.errors import MISCONFIGURED_DB, DatabaseMisconfigured, DatabaseUnreachable

# PostgreSQL's SSLRequest: length 8, code 80877103.
_SSL_REQUEST = struct.pack("!ii", 8, 80877103)


async def connect(*args: Any, **kwargs: Any) -> asyncpg.Connection:
    """The pool's way to open a connection: a database that does not exist, a role
    refused, or a server that will not speak the TLS sslmode asks for is a configuration
    mistake; any other failure to connect is transient (a database refusing connections
    answers 55000, which is no connection error class)."""
    try:
        return await asyncpg.connect(*args, **kwargs)
    except MISCONFIGURED_DB as exc:
        raise DatabaseMisconfigured(str(exc)) from exc
    except asyncpg.PostgresError as exc:
        raise DatabaseUnreachable(type(exc).__name__) from exc
    except ConnectionError as exc:
        # asyncpg says a refused TLS upgrade with a plain ConnectionError, as it does a
        # connection lost mid-handshake: ask the server itself, by the protocol.
        dsn = args[0] if args and isinstance(args[0], str) else None
        where = tls_required_at(dsn) if dsn and type(exc) is ConnectionError else None
        if where is not None and await refuses_tls(*where):
            raise DatabaseMisconfigured(
                f"the server at {where[0]}:{where[1]} does not accept TLS, which sslmode asks for"
            ) from exc
        raise


def tls_required_at(dsn: str) -> tuple[str, int] | None:
    """The one TCP host and port of ``dsn`` when its sslmode requires TLS; else None."""
    parts = urlsplit(dsn)
    modes = parse_qs(parts.query).get("sslmode", [])
    if not modes or modes[-1] not in ("require", "verify-ca", "verify-full"):
        return None
    if not parts.hostname or "," in parts.netloc:
        return None  # a socket directory, or several hosts: not asked
    return parts.hostname, parts.port or 5432


async def refuses_tls(host: str, port: int) -> bool:
    """Whether the server answers PostgreSQL's SSLRequest with 'N' (no TLS here)."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 2.0)
    except (OSError, TimeoutError):
        return False
    try:
        writer.write(_SSL_REQUEST)
        answer = await asyncio.wait_for(reader.read(1), 2.0)
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()
    return answer == b"N"
