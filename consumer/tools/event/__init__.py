"""``user-events-consumer event``: what became of one event, by source and id or position.

--at: the record read by assignment and decoded as the consumer does  ->  its
source and id  ->  the event log's row, the parked events' row and the dead-letter
topic's letters (lookup)  ->  applied, stale, duplicate, parked, dead-lettered, pending
or not found (answer: pure)
"""

from consumer.tools.event.command import add_parser

__all__ = ["add_parser"]
