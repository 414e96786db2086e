"""The insights Spark job: nine results per store and for ALL, into Redis and PostgreSQL."""
