"""Partitions: provider (dynamic ``providers``) x billing month.

The ``billing_month`` dimension covers the months kept (``KOKU_RETAIN_NUM_MONTHS``) up to and including
the current month, so a month outside that window is neither shown nor launchable and an asset has about
retention x providers partitions. The window's start is computed when the code location loads; its end
follows the clock (``end_offset=1``: the current, unfinished month is a partition). A code location that
runs across a month boundary therefore shows one month more per month until it is reloaded (every
deployment reloads it); the purge keeps the data itself to the retention window either way.
"""

from __future__ import annotations

from datetime import date

import dagster as dg

from koku_dagster.infra.db.types import utcnow
from koku_dagster.infra.settings import get_settings
from koku_dagster.ingest.polling import billing_months


def billing_window_start(retain_num_months: int, today: date) -> date:
    """The oldest month kept: the first partition of ``billing_month``."""
    return billing_months(today, retain_num_months)[-1]


def billing_month_partitions_for(retain_num_months: int, today: date | None = None) -> dg.MonthlyPartitionsDefinition:
    start = billing_window_start(retain_num_months, today or utcnow().date())
    return dg.MonthlyPartitionsDefinition(start_date=start.isoformat(), end_offset=1)


providers_partitions = dg.DynamicPartitionsDefinition(name="providers")
billing_month_partitions = billing_month_partitions_for(get_settings().retain_num_months)
provider_month_partitions = dg.MultiPartitionsDefinition(
    {"provider": providers_partitions, "billing_month": billing_month_partitions}
)
