"""The FOCUS 1.2 columns this project writes: names, storage types, feature levels, nulls and allowed values.

One table drives both the output projection (every file gets exactly these columns, in this order, with
these types, followed by the ``x_`` custom columns) and the checks. See ``docs/focus.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

FOCUS_VERSION = "1.2"
CUSTOM_PREFIX = "x_"
SOURCE_UUID = "x_SourceUuid"
KOKU_PROVIDER_TYPE = "x_KokuProviderType"


class Level(Enum):
    """The spec's feature level of a column."""

    MANDATORY = "Mandatory"
    CONDITIONAL = "Conditional"
    RECOMMENDED = "Recommended"


class Kind(Enum):
    """The spec's data type, with the DuckDB type it is stored as."""

    STRING = "VARCHAR"
    DECIMAL = "DOUBLE"
    DATETIME = "TIMESTAMP WITH TIME ZONE"
    JSON = "VARCHAR"  # KeyValueFormat: a JSON object as text


@dataclass(frozen=True)
class Column:
    """One FOCUS column as this project writes it."""

    name: str
    kind: Kind
    level: Level
    nullable: bool
    allowed: tuple[str, ...] = ()


def _col(name: str, kind: Kind, level: Level, nullable: bool = True, allowed: tuple[str, ...] = ()) -> Column:
    return Column(name, kind, level, nullable, allowed)


S, D, T, J = Kind.STRING, Kind.DECIMAL, Kind.DATETIME, Kind.JSON
M, C, R = Level.MANDATORY, Level.CONDITIONAL, Level.RECOMMENDED

CHARGE_CATEGORIES = ("Usage", "Purchase", "Tax", "Credit", "Adjustment")
CHARGE_CLASSES = ("Correction",)
CHARGE_FREQUENCIES = ("One-Time", "Recurring", "Usage-Based")
PRICING_CATEGORIES = ("Standard", "Dynamic", "Committed", "Other")
USED_UNUSED = ("Used", "Unused")
COMMITMENT_CATEGORIES = ("Spend", "Usage")
SERVICE_CATEGORIES = (
    "AI and Machine Learning", "Analytics", "Business Applications", "Compute", "Databases", "Developer Tools",
    "Multicloud", "Identity", "Integration", "Internet of Things", "Management and Governance", "Media",
    "Migration", "Mobile", "Networking", "Security", "Storage", "Web", "Other",
)  # fmt: skip

#: Alphabetical, as the spec lists them. Columns the line items cannot fill are written as nulls.
COLUMNS: tuple[Column, ...] = (
    _col("AvailabilityZone", S, R),
    _col("BilledCost", D, M, nullable=False),
    _col("BillingAccountId", S, M, nullable=False),
    _col("BillingAccountName", S, M),
    _col("BillingCurrency", S, M, nullable=False),
    _col("BillingPeriodEnd", T, M, nullable=False),
    _col("BillingPeriodStart", T, M, nullable=False),
    _col("CapacityReservationId", S, C),
    _col("CapacityReservationStatus", S, C, allowed=USED_UNUSED),
    _col("ChargeCategory", S, M, nullable=False, allowed=CHARGE_CATEGORIES),
    _col("ChargeClass", S, M, allowed=CHARGE_CLASSES),
    _col("ChargeDescription", S, M),
    _col("ChargeFrequency", S, R, nullable=False, allowed=CHARGE_FREQUENCIES),
    _col("ChargePeriodEnd", T, M, nullable=False),
    _col("ChargePeriodStart", T, M, nullable=False),
    _col("CommitmentDiscountCategory", S, C, allowed=COMMITMENT_CATEGORIES),
    _col("CommitmentDiscountId", S, C),
    _col("CommitmentDiscountName", S, C),
    _col("CommitmentDiscountQuantity", D, C),
    _col("CommitmentDiscountStatus", S, C, allowed=USED_UNUSED),
    _col("CommitmentDiscountType", S, C),
    _col("CommitmentDiscountUnit", S, C),
    _col("ConsumedQuantity", D, C),
    _col("ConsumedUnit", S, C),
    _col("ContractedCost", D, M, nullable=False),
    _col("ContractedUnitPrice", D, C),
    _col("EffectiveCost", D, M, nullable=False),
    _col("InvoiceId", S, R),
    _col("InvoiceIssuerName", S, M, nullable=False),
    _col("ListCost", D, M, nullable=False),
    _col("ListUnitPrice", D, C),
    _col("PricingCategory", S, C, allowed=PRICING_CATEGORIES),
    _col("PricingQuantity", D, M),
    _col("PricingUnit", S, M),
    _col("ProviderName", S, M, nullable=False),
    _col("PublisherName", S, M, nullable=False),
    _col("RegionId", S, C),
    _col("RegionName", S, C),
    _col("ResourceId", S, C),
    _col("ResourceName", S, C),
    _col("ResourceType", S, C),
    _col("ServiceCategory", S, M, nullable=False, allowed=SERVICE_CATEGORIES),
    _col("ServiceName", S, M, nullable=False),
    _col("SkuId", S, C),
    _col("SkuMeter", S, C),
    _col("SkuPriceId", S, C),
    _col("SubAccountId", S, C),
    _col("SubAccountName", S, C),
    _col("Tags", J, C),
)
BY_NAME: dict[str, Column] = {c.name: c for c in COLUMNS}
MANDATORY: tuple[str, ...] = tuple(c.name for c in COLUMNS if c.level is Level.MANDATORY)
NOT_NULL: tuple[str, ...] = tuple(c.name for c in COLUMNS if not c.nullable)
CUSTOM_COLUMNS: tuple[tuple[str, Kind], ...] = ((SOURCE_UUID, S), (KOKU_PROVIDER_TYPE, S))
