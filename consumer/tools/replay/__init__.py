"""``user-events-consumer replay``: re-apply a range of the topic through the live write path.

    --from/--to  ->  offset ranges (ranges: pure, after the lookups)  ->  read by assignment
      -> split_batch (pure)  ->  Store.batch() + BatchWriter.apply  ->  dead letters (apply)
      -> a summary per partition (summary), progress while it runs (progress)

The replay joins no consumer group and never writes the live group's offsets, so the
live consumer is not disturbed. Its writes go through the same idempotent, ordered
path as ``run`` (per-user advisory locks, dedupe on (source, id), last-writer-wins per
field), so a replay beside the live consumer leaves the state a single pass would.
"""

from consumer.tools.replay.command import add_parser

__all__ = ["add_parser"]
