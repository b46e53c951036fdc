"""Partitions : provider (dynamic ``providers``) x billing month."""

from __future__ import annotations

import dagster as dg

providers_partitions = dg.DynamicPartitionsDefinition(name="providers")
billing_month_partitions = dg.MonthlyPartitionsDefinition(start_date="2024-01-01", end_offset=1)
provider_month_partitions = dg.MultiPartitionsDefinition(
    {"provider": providers_partitions, "billing_month": billing_month_partitions}
)
