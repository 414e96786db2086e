"""The behaviour-event contract shared by the webhook, the persister and the Spark jobs."""
