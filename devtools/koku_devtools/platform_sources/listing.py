"""List endpoints: ``filter[...]``, ``sort_by``, ``limit``/``offset`` and the paged collection document."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from koku_devtools.platform_sources.errors import bad_request
from koku_devtools.platform_sources.fields import rest_time


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


FILTER_COLUMNS: dict[str, frozenset[str]] = {
    "sources": _words(
        "id created_at updated_at paused_at name uid version imported source_ref app_creation_workflow"
        " source_type_id availability_status last_checked_at last_available_at"
    ),
    "applications": _words(
        "id created_at updated_at paused_at availability_status last_checked_at last_available_at"
        " availability_status_error extra source_id application_type_id"
    ),
    "authentications": _words(
        "id name authtype username availability_status last_checked_at last_available_at"
        " availability_status_error source_id resource_type resource_id"
    ),
    "application_authentications": _words("id created_at updated_at paused_at application_id authentication_id"),
    "endpoints": _words(
        "id created_at updated_at paused_at role port default scheme host path verify_ssl"
        " certificate_authority receptor_node availability_status last_checked_at last_available_at"
        " availability_status_error source_id"
    ),
    "application_types": _words(
        "id created_at updated_at name display_name dependent_applications supported_source_types"
        " supported_authentication_types resource_ownership"
    ),
    "source_types": _words("id created_at updated_at category name product_name vendor icon_url schema"),
}
OPERATORS = _words(
    "eq not_eq gt gte lt lte nil not_nil contains starts_with ends_with eq_i not_eq_i contains_i"
    " starts_with_i ends_with_i"
)
# Related tables that list endpoints accept as ``filter[<relation>][<column>][<op>]``.
RELATIONS: dict[str, str] = {"source_type": "source_types", "application_type": "application_types"}
DEFAULT_LIMIT = 100


@dataclass(frozen=True)
class Filter:
    """One ``filter[...]`` condition; several values mean IN for ``eq``."""

    relation: str | None
    column: str
    op: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class ListQuery:
    """Filters, sorting and pagination parsed from a query string."""

    filters: tuple[Filter, ...] = ()
    sort: tuple[tuple[str, bool], ...] = ()
    limit: int = DEFAULT_LIMIT
    offset: int = 0


# --------------------------------------------------------------------------- parsing


def parse_list_query(pairs: Sequence[tuple[str, str]]) -> ListQuery:
    """Parse ``filter[col][op]=v``, bare ``col=v``, ``sort_by``, ``limit`` and ``offset``."""
    grouped: dict[tuple[str | None, str, str], list[str]] = {}
    sort: list[tuple[str, bool]] = []
    limit, offset = DEFAULT_LIMIT, 0
    for key, value in pairs:
        if key == "limit":
            limit = _int_param(value, "limit", minimum=1)
        elif key == "offset":
            offset = _int_param(value, "offset", minimum=0)
        elif key == "sort_by":
            sort.append(_sort_param(value))
        else:
            grouped.setdefault(_filter_key(key), []).append(value)
    filters = tuple(Filter(r, c, o, tuple(v)) for (r, c, o), v in grouped.items())
    return ListQuery(filters, tuple(sort), limit, offset)


def _sort_param(value: str) -> tuple[str, bool]:
    """``col``, ``col:desc`` or ``col asc`` -> (column, descending)."""
    parts = value.replace(":", " ").split()
    if not parts or len(parts) > 2 or (len(parts) == 2 and parts[1].lower() not in ("asc", "desc")):
        raise bad_request("invalid sort_by parameter")
    return parts[0], len(parts) == 2 and parts[1].lower() == "desc"


def _filter_key(key: str) -> tuple[str | None, str, str]:
    """``filter[relation][col][op]`` (relation and op optional) or a bare ``col`` -> (relation, col, op)."""
    tokens = re.findall(r"\w+", key)
    if tokens and tokens[0] == "filter" and key.startswith("filter["):
        rest = tokens[1:]
    else:
        rest = tokens[:1]
    relation = None
    if len(rest) >= 2 and rest[0] in RELATIONS and rest[1] not in OPERATORS:
        relation, rest = rest[0], rest[1:]
    if not rest or len(rest) > 2:
        raise bad_request("invalid filter parameter")
    op = rest[1] if len(rest) == 2 else "eq"
    if op not in OPERATORS:
        raise bad_request("invalid filter parameter")
    return relation, rest[0], op


def _int_param(value: str, name: str, *, minimum: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise bad_request(f"invalid {name} parameter") from None
    if number < minimum:
        raise bad_request(f"{name} must be at least {minimum}")
    return number


# --------------------------------------------------------------------------- matching and sorting


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return rest_time(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return str(value)


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _matches(value: Any, op: str, wanted: tuple[str, ...]) -> bool:
    if op == "nil":
        return value is None
    if op == "not_nil":
        return value is not None
    text = _text(value)
    if text is None:
        return False
    if op.endswith("_i"):
        text, wanted, op = text.lower(), tuple(w.lower() for w in wanted), op[:-2]
    first = wanted[0]
    if op == "eq":
        return text in wanted
    if op == "not_eq":
        return text not in wanted
    if op == "contains":
        return first in text
    if op == "starts_with":
        return text.startswith(first)
    if op == "ends_with":
        return text.endswith(first)
    left, right = _number(text), _number(first)
    pair: tuple[Any, Any] = (left, right) if left is not None and right is not None else (text, first)
    return {
        "gt": pair[0] > pair[1],
        "gte": pair[0] >= pair[1],
        "lt": pair[0] < pair[1],
        "lte": pair[0] <= pair[1],
    }[op]


def _sort_key(value: Any) -> tuple[int, Any]:
    if value is None:
        return (2, "")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, value)
    return (1, _text(value))


def _column_sort_key(column: str) -> Callable[[Any], tuple[int, Any]]:
    return lambda row: _sort_key(getattr(row, column))


def select(
    rows: Iterable[Any],
    table: str,
    query: ListQuery,
    related: dict[str, Callable[[Any], Any]] | None = None,
) -> tuple[list[Any], int]:
    """Filter, sort and page ``rows``; returns (page, total count). Unknown columns -> 400."""
    related = related or {}
    result = list(rows)
    for flt in query.filters:
        if flt.relation is None:
            if flt.column not in FILTER_COLUMNS[table]:
                raise bad_request("invalid filter parameter")
            result = [r for r in result if _matches(getattr(r, flt.column), flt.op, flt.values)]
            continue
        lookup = related.get(flt.relation)
        if lookup is None or flt.column not in FILTER_COLUMNS[RELATIONS[flt.relation]]:
            raise bad_request("invalid filter parameter")
        result = [r for r in result if _matches(getattr(lookup(r), flt.column), flt.op, flt.values)]
    result.sort(key=lambda r: r.id)
    for column, desc in reversed(query.sort):
        if column not in FILTER_COLUMNS[table]:
            raise bad_request("invalid sort_by parameter")
        result.sort(key=_column_sort_key(column), reverse=desc)
    return result[query.offset : query.offset + query.limit], len(result)


# --------------------------------------------------------------------------- the collection document


def _link(path: str, pairs: Sequence[tuple[str, str]], limit: int, offset: int) -> str:
    kept = [(k, v) for k, v in pairs if k not in ("limit", "offset")]
    kept += [("limit", str(limit)), ("offset", str(offset))]
    kept.sort(key=lambda kv: kv[0])
    return path + "?" + "&".join(f"{k}={quote(v, safe='/[]:,')}" for k, v in kept)


def collection_document(
    path: str,
    pairs: Sequence[tuple[str, str]],
    query: ListQuery,
    page: list[dict[str, Any]],
    count: int,
) -> dict[str, Any]:
    """``{"data", "meta", "links"}`` of one page of a list endpoint."""
    return {
        "data": page,
        "meta": {"count": count, "limit": query.limit, "offset": query.offset},
        "links": {
            "first": _link(path, pairs, query.limit, query.offset),
            "last": _link(path, pairs, query.limit, query.offset + query.limit),
        },
    }
