"""A stand-in Platform Sources service for development, tests and benchmarks.

Never imported by production code. See :class:`StandInServer` and :class:`StandInAdmin`; run it on
its own with ``python -m koku_devtools.platform_sources``.
"""

from koku_devtools.platform_sources.admin import AdminError, StandInAdmin, identity_header
from koku_devtools.platform_sources.events import RecordedEvent
from koku_devtools.platform_sources.server import RecordedRequest, StandInServer
from koku_devtools.platform_sources.store import Store
from koku_devtools.platform_sources.type_catalog import COST_MANAGEMENT

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
