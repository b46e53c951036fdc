"""A stand-in Platform Sources service for development and tests.

Never imported by production code. See :class:`StandInServer` and :class:`StandInAdmin`.
"""

from koku_dagster.devtools.platform_sources.admin import AdminError, StandInAdmin, identity_header
from koku_dagster.devtools.platform_sources.server import (
    RecordedEvent,
    RecordedRequest,
    StandInServer,
)
from koku_dagster.devtools.platform_sources.store import COST_MANAGEMENT, Store

__all__ = [
    "COST_MANAGEMENT",
    "AdminError",
    "RecordedEvent",
    "RecordedRequest",
    "StandInAdmin",
    "StandInServer",
    "Store",
    "identity_header",
]
