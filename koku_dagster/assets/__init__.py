"""Dagster assets and asset checks."""

#: Who answers for every asset of this code location.
OWNERS = ["team:cost-ingestion"]
