"""Where the service meets the world: Kafka, the store (all SQL), dead letters, HTTP, metrics."""
