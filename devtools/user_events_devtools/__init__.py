"""Development tools: the local stack, the benchmark and demo data (user-events-devtools).

A distribution apart from the consumer's (devtools/pyproject.toml): the runtime wheel and
image go without it. It adds `dev` and `bench` to the console script through the
``user_events_consumer.commands`` entry points.
"""
