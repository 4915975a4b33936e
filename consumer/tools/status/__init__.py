"""``user-events-consumer status``: where each partition of the topic stands for the group.

PostgreSQL's stored offsets and parked events, Kafka's committed ones (no group joined),
the high watermarks and the record at each stored offset (by assignment)  ->  lag in
records and in seconds, what is parked (report: pure)  ->  a table, or JSON; exit 1 over
--max-lag-seconds
"""

from consumer.tools.status.command import add_parser

__all__ = ["add_parser"]
