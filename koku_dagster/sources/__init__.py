"""Sources integration domain: events, the Platform Sources client, source records and providers.

Nothing in this package knows about Dagster.
"""
