"""Dagster schedules: the orchestrator's cadence."""
