"""The user-events consumer: Kafka CloudEvents in, an idempotent PostgreSQL projection out."""

__version__ = "0.1.0"
