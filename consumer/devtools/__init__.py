"""Development tools: the local stack, the benchmark and demo data (the ``devtools`` extra)."""
