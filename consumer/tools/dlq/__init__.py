"""``user-events-consumer dlq list|show|redrive``: browse the dead-letter topic and redrive it.

All read the dead-letter topic by partition assignment (no consumer group) up to its
high watermark when they start, so they end. The decisions are pure (letters: reading
a dead letter's headers and source; criteria: the filters; masking; redrive_rules: the
redrive-count limit, the position to keep); Kafka and PostgreSQL are touched only in
listing, show and redrive.
"""

from consumer.tools.dlq.command import add_parser

__all__ = ["add_parser"]
