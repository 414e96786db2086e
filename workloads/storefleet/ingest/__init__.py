"""The ingest webhook: behaviour events over HTTP, validated, acknowledged by Kafka."""
