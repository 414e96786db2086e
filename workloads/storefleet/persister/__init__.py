"""The persister: Kafka events into PostgreSQL analytics.events, each event exactly once."""
