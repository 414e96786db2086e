"""`storefleet prices`: the price monitor — deals now (`deals`) and a standing watch (`watch`).

Reads: STOREFLEET_PG_DSN (conta_verde.products, price_monitor.price_steps kept from
conta_verde.price_history by migration 0050's triggers).
Writes: nothing in the database. `deals` prints a table or, with --json, one JSON object;
`watch` prints one JSON line per new deal on stdout (progress on stderr).
Run: `storefleet prices deals --months 6 --discount 15 [--store demo-0001] [--limit 20] [--json]`
     `storefleet prices watch --months 6 --discount 15 [--store ID] [--interval 60]`

A deal: current price at least D% below the time-weighted average price of the last M months
(see storefleet.prices.monitor). The watch LISTENs on `storefleet_prices` (notified by a trigger
on every new price-history row) and re-checks at once; it also re-checks every --interval
seconds, since the window slides with time and a product can become a deal without a change.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import click
import psycopg

from storefleet import endpoints
from storefleet.prices.monitor import (
    CHANNEL,
    MAX_MONTHS,
    MIN_MONTHS,
    DealWatch,
    check_discount,
    check_months,
    find_deals,
)

log = logging.getLogger("storefleet.prices.watch")


class DiscountPercent(click.ParamType):
    """A percentage D with 0 < D < 100, kept as a Decimal so the threshold is exact."""

    name = "percent"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Decimal:
        if isinstance(value, Decimal):
            return value
        try:
            return check_discount(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class Months(click.ParamType):
    """A whole number of months M with 1 <= M <= 60."""

    name = "months"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> int:
        try:
            return check_months(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


MONTHS = click.option(
    "--months", "-m", required=True, type=Months(),
    help=f"Period M in months ({MIN_MONTHS}..{MAX_MONTHS}; a month is 30.44 days).")
DISCOUNT = click.option(
    "--discount", "-d", required=True, type=DiscountPercent(),
    help="Discount D in percent (0 < D < 100) below the period's average price.")
STORE = click.option("--store", default=None, help="Only this store_id.")


def _dsn() -> str:
    try:
        return endpoints.require(endpoints.PG_DSN)
    except endpoints.SettingError as exc:
        raise click.UsageError(str(exc)) from None


@click.group("prices")
def prices() -> None:
    """Price monitor: products well below their average price of the last months."""


@prices.command("deals")
@MONTHS
@DISCOUNT
@STORE
@click.option("--limit", "-n", type=click.IntRange(min=1), default=None,
              help="At most this many deals (the best).")
@click.option("--at", "at", type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S"]),
              default=None, help="Evaluate as of this time (ISO 8601; default now, UTC if no "
                                 "offset).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def deals(months: int, discount: Decimal, store: str | None, limit: int | None,
          at: datetime | None, as_json: bool) -> None:
    """List current deals, best first."""
    if at is not None and at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    try:
        with psycopg.connect(_dsn(), autocommit=True,
                             application_name="storefleet-price-monitor") as conn:
            as_of = at or conn.execute("SELECT now()").fetchone()[0]
            # Now: the fast path (migration 0065); an `--at` instant: the probing query.
            found = find_deals(conn, months, discount, store=store, limit=limit, at=as_of,
                               cached=at is None)
    except psycopg.OperationalError as exc:
        raise click.ClickException(f"PostgreSQL unavailable: {exc}") from None
    if as_json:
        click.echo(json.dumps({
            "months": months, "discount": float(discount), "store": store,
            "as_of": as_of.isoformat(), "deals": [d.as_json() for d in found],
        }))
        return
    if not found:
        click.echo(f"no product is {discount}% or more below its {months}-month average")
        return
    click.echo(f"{'store':<14} {'product':>10}  {'name':<24} {'current':>10} {'average':>10} "
               f"{'discount':>8}")
    for d in found:
        click.echo(f"{d.store_id:<14} {d.product_id:>10}  {d.name[:24]:<24} "
                   f"{d.current_price:>10.2f} {d.average_price:>10.2f} "
                   f"{d.discount_percent:>7.2f}%")


@prices.command("watch")
@MONTHS
@DISCOUNT
@STORE
@click.option("--interval", type=click.FloatRange(min=0.1), default=60.0, show_default=True,
              help="Seconds between re-checks when no price changes.")
@click.option("--only-new", is_flag=True,
              help="Take the deals at start as already told; print only later ones.")
@click.option("--log-level", default="INFO", show_default=True)
def watch(months: int, discount: Decimal, store: str | None, interval: float, only_new: bool,
          log_level: str) -> None:
    """Print one JSON line per new deal as prices change, until stopped (SIGINT/SIGTERM)."""
    logging.basicConfig(level=log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    dsn = _dsn()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    state = DealWatch(months, discount, store)
    first = True
    while not stop.is_set():
        try:
            with psycopg.connect(dsn, autocommit=True,
                                 application_name="storefleet-price-watch") as conn:
                conn.execute(f"LISTEN {CHANNEL}")
                log.info("watching deals of %s%% or more below the %d-month average%s",
                         discount, months, f" in store {store}" if store else "")
                # Listening before the first check: no change can fall between the two.
                _check(conn, state, months, discount, tell=not (first and only_new))
                first = False
                _listen(conn, state, months, discount, interval, stop)
        except psycopg.OperationalError as exc:
            # Deals that appeared while disconnected are told at the first check after.
            log.warning("PostgreSQL unavailable (%s); retrying", exc)
            stop.wait(2.0)


def _listen(conn: psycopg.Connection, state: DealWatch, months: int, discount: Decimal,
            interval: float, stop: threading.Event) -> None:
    next_sweep = time.monotonic() + interval
    while not stop.is_set():
        wait = max(0.0, min(1.0, next_sweep - time.monotonic()))
        # Wake at least every second to see `stop`; then take every notice already waiting.
        notices = list(conn.notifies(timeout=wait, stop_after=1))
        if notices:
            notices += conn.notifies(timeout=0)
        changed = any(state.store is None or n.payload == state.store for n in notices)
        if changed or time.monotonic() >= next_sweep:
            _check(conn, state, months, discount, tell=True)
            next_sweep = time.monotonic() + interval


def _check(conn: psycopg.Connection, state: DealWatch, months: int, discount: Decimal,
           tell: bool) -> None:
    new = state.check(conn)
    detected_at = datetime.now(UTC).isoformat(timespec="milliseconds")
    if tell:
        for deal in new:
            click.echo(json.dumps({**deal.as_json(), "months": months,
                                   "discount": float(discount), "detected_at": detected_at}))
        sys.stdout.flush()
    log.info("checked: %d deals, %d new", len(state.told), len(new) if tell else 0)
