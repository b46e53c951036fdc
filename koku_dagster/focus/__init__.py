"""FOCUS 1.2 cost rows from the line items of AWS, Azure and GCP provider months, and their checks.

See ``docs/focus.md`` for the mapping per provider type.
"""

from koku_dagster.focus.build import FocusResult, build_focus, focus_dir, line_item_billed_totals
from koku_dagster.focus.checks import CheckOutcome, check_allowed_values, check_billed_totals, check_mandatory_columns

__all__ = [
    "CheckOutcome",
    "FocusResult",
    "build_focus",
    "check_allowed_values",
    "check_billed_totals",
    "check_mandatory_columns",
    "focus_dir",
    "line_item_billed_totals",
]
