"""What to ingest and when (Koku's orchestrator rules), free of Dagster."""
