"""Pure functions that turn insight payloads (contract JSON) into what a page shows.

No Panel here, so every rule about how a value reads is unit-tested without a browser.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

DASH = "–"


def parse_time(text: Any) -> datetime | None:
    """An RFC 3339 string (with Z or an offset) as an aware UTC datetime; None if not one."""
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def number(value: Any) -> float | None:
    """A JSON number as float; None for missing, booleans, text, NaN."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    return float(value)


def format_count(value: Any) -> str:
    n = number(value)
    return DASH if n is None else f"{n:,.0f}"


def format_money(value: Any) -> str:
    n = number(value)
    return DASH if n is None else f"{n:,.2f}"


def format_decimal(value: Any, places: int = 1) -> str:
    n = number(value)
    return DASH if n is None else f"{n:,.{places}f}"


def window_label(payload: dict[str, Any] | None) -> str:
    """'17:12–17:13 UTC' for a minute, '16:13–17:13 UTC' for the last hour; '' if unknown."""
    if not payload:
        return ""
    start = parse_time(payload.get("window_start"))
    end = parse_time(payload.get("window_end"))
    if start is None or end is None:
        return ""
    return f"{start:%H:%M}–{end:%H:%M} UTC"


def chart_span(minutes: Sequence[datetime | None],
               at_least: timedelta = timedelta(minutes=10)) -> tuple[datetime, datetime]:
    """x-axis bounds of a per-minute chart: every point with half a minute to spare, and at
    least `at_least` wide (ending at the newest point) so ticks stay whole minutes."""
    known = [m for m in minutes if m is not None]
    if not known:
        raise ValueError("chart_span needs at least one time")
    pad = timedelta(seconds=30)
    end = max(known) + pad
    start = min(min(known) - pad, end - at_least)
    return start, end


def last_update(latest: dict[str, dict[str, Any]]) -> datetime | None:
    """The newest `updated_at` among a scope's payloads."""
    moments = [parse_time(p.get("updated_at")) for p in latest.values()]
    known = [m for m in moments if m is not None]
    return max(known) if known else None


def age_label(moment: datetime | None, now: datetime) -> str:
    """'17:13:05 UTC (4 s ago)'; 'no data yet' when nothing was ever read."""
    if moment is None:
        return "no data yet"
    seconds = max(0, int((now - moment).total_seconds()))
    if seconds < 120:
        ago = f"{seconds} s ago"
    elif seconds < 7200:
        ago = f"{seconds // 60} min ago"
    else:
        ago = f"{seconds // 3600} h ago"
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC ({ago})"


def ranking_rows(value: Any, count_field: str, limit: int = 10) -> list[list[str]]:
    """Rows [rank, store, product, count] of a top_purchased / top_viewed list."""
    if not isinstance(value, list):
        return []
    items = [i for i in value if isinstance(i, dict)]
    items.sort(key=lambda i: (number(i.get("rank")) or math.inf))
    return [
        [format_count(i.get("rank")), str(i.get("store_id", DASH)),
         str(i.get("product_id", DASH)), format_count(i.get(count_field))]
        for i in items[:limit]
    ]


def unique_viewer_rows(value: Any, limit: int = 10) -> list[list[str]]:
    """Rows [store, product, users] of unique_viewers, most viewers first."""
    if not isinstance(value, list):
        return []
    items = [i for i in value if isinstance(i, dict)]
    items.sort(key=lambda i: -(number(i.get("users")) or 0))
    return [
        [str(i.get("store_id", DASH)), str(i.get("product_id", DASH)),
         format_count(i.get("users"))]
        for i in items[:limit]
    ]


def error_rows(value: Any) -> list[list[str]]:
    """Rows [component, count] of the errors metric, most errors first, then by name."""
    if not isinstance(value, dict):
        return []
    pairs = [(str(k), number(v) or 0) for k, v in value.items()]
    pairs.sort(key=lambda kv: (-kv[1], kv[0]))
    return [[name, format_count(count)] for name, count in pairs]


def error_total(value: Any) -> float | None:
    if not isinstance(value, dict):
        return None
    return sum(number(v) or 0 for v in value.values())


def field(value: Any, name: str) -> float | None:
    """A numeric field of an object-valued metric (views_before_purchase, oversold)."""
    if not isinstance(value, dict):
        return None
    return number(value.get(name))


def html_table(headers: Sequence[str], rows: Sequence[Sequence[str]], empty: str,
               numeric: Sequence[int] = ()) -> str:
    """A small HTML table (escaped), or a muted line when there are no rows."""
    if not rows:
        return f'<p class="sf-empty">{html.escape(empty)}</p>'
    right = set(numeric)

    def cell(tag: str, index: int, text: str) -> str:
        style = ' style="text-align:right"' if index in right else ""
        return f"<{tag}{style}>{html.escape(text)}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(headers))
    body = "".join(
        "<tr>" + "".join(cell("td", i, c) for i, c in enumerate(row)) + "</tr>" for row in rows
    )
    return f'<table class="sf-table"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def deal_rows(deals: Sequence[Any], limit: int = 10) -> list[list[str]]:
    """Rows [store, product, current price, average price, discount] of the price monitor's
    deals (`storefleet.prices.monitor.Deal`, Decimal fields), in the monitor's order."""
    def plain(value: Any) -> Any:
        return float(value) if isinstance(value, Decimal) else value

    rows = []
    for deal in deals[:limit]:
        percent = format_decimal(plain(deal.discount_percent), 1)
        rows.append([str(deal.store_id), str(deal.name), format_money(plain(deal.current_price)),
                     format_money(plain(deal.average_price)),
                     percent if percent == DASH else f"{percent} %"])
    return rows
