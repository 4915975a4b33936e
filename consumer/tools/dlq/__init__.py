"""``user-events-consumer dlq list|redrive``: inspect the dead-letter topic and redrive it.

Both read the dead-letter topic by partition assignment (no consumer group) up to its
high watermark when they start, so they end. The decisions are pure (letters: reading
the provenance headers; masking; redrive_rules: filters, the redrive-count limit, the
position to keep); Kafka and PostgreSQL are touched only in listing and redrive.
"""

from consumer.tools.dlq.command import add_parser

__all__ = ["add_parser"]
