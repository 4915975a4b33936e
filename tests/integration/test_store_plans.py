"""The store's statements keep using indexes as a fresh database grows (real PostgreSQL)."""

from __future__ import annotations

from consumer.migrate import apply_migrations
from consumer.settings import Settings
from consumer.store import _LOGGED_KEYS, Store


async def test_a_plan_made_on_an_empty_log_does_not_scan_the_grown_log(database: str) -> None:
    store = await Store.open(Settings(database_url=database, db_pool_max_size=1))
    try:
        async with store.pool.acquire() as conn:
            await apply_migrations(conn)
            await conn.execute(f"PREPARE logged_keys(text[], text[]) AS {_LOGGED_KEYS}")
        # Enough executions on the empty log for PostgreSQL to cache a generic plan, each
        # in its own turn with the (single) connection, as batches take it: the pool
        # resets the session on every release.
        for _ in range(8):
            async with store.pool.acquire() as conn:
                await conn.fetch("EXECUTE logged_keys(ARRAY['/s'], ARRAY['e'])")
        async with store.pool.acquire() as conn:
            await conn.execute(
                """
                INSERT INTO user_events (source, event_id, user_id, type, time, kafka_topic,
                                         kafka_partition, kafka_offset, payload, outcome)
                SELECT '/s', 'e' || g, 'u' || g, 'user.created', now(), 't', 0, g, '{}', 'applied'
                FROM generate_series(1, 50000) AS g
                """
            )
            plan = "\n".join(
                row[0]
                for row in await conn.fetch(
                    "EXPLAIN EXECUTE logged_keys(ARRAY['/s', '/s'], ARRAY['e1', 'e2'])"
                )
            )
    finally:
        await store.close()
    assert "user_events_pkey" in plan, plan
    assert "Seq Scan on user_events" not in plan, plan
