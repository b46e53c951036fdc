"""The infrastructure layer: settings, Kafka batch reads, the application database and the object store.

Nothing here knows about sources, ingestion or Dagster; every other layer may import it.
"""
