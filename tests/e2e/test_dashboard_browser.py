"""The dashboard in a real browser: insights written to Redis per the contract show on the page,
a published update appears without a reload, the price deals come from the price-monitor
service (a real `storefleet price-monitor` asked over Redis) and follow the inputs, a user's watch
shows its new deals live, and the page loads nothing from outside the machine. Needs Debian's
chromium (scripts/install-system-packages.sh) and the `dashboard` extra.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import panel  # noqa: F401  (the `dashboard` extra; missing it is an error, not a skip)
import psycopg
import pytest
import redis
from psycopg import sql

from storefleet.insights.contract import ALL, InsightValue, channel, key
from tests.e2e.chromium import Chromium, chromium_path
from tests.integration.price_monitor_service import MonitorService

pytestmark = [pytest.mark.browser, pytest.mark.services]

SCREENSHOT = Path("/tmp/dashboard.png")
MINUTE = timedelta(minutes=1)
MONTH_DAYS = 30.44

# Finds elements through Panel's shadow roots; sets an input by its label as a user would
# (value, then the input and change events Bokeh listens to), or clicks a button by its text.
SHADOW_JS = """
function sfAll(root, selector, out) {
  root.querySelectorAll(selector).forEach(e => out.push(e));
  root.querySelectorAll('*').forEach(e => {
    if (e.shadowRoot) sfAll(e.shadowRoot, selector, out);
  });
  return out;
}
function sfSet(label, value) {
  const found = sfAll(document, 'label', []).filter(l => l.textContent.trim() === label);
  if (found.length !== 1) return 'labels named ' + label + ': ' + found.length;
  const input = found[0].parentElement.querySelector('input');
  input.focus();
  input.value = value;
  input.dispatchEvent(new Event('input', {bubbles: true}));
  input.dispatchEvent(new Event('change', {bubbles: true}));
  input.blur();
  return 'ok';
}
function sfClick(text) {
  const found = sfAll(document, 'button', []).filter(b => b.textContent.trim() === text);
  if (found.length !== 1) return 'buttons named ' + text + ': ' + found.length;
  found[0].click();
  return 'ok';
}
"""


def run_js(browser: Chromium, expression: str) -> None:
    result = browser.call("Runtime.evaluate", expression=SHADOW_JS + expression,
                          returnByValue=True)
    assert result.get("result", {}).get("value") == "ok", result


def garden_chair_deal(months: int) -> tuple[str, str]:
    """(average, discount %) of write_price_history's chair over M months, worked out by hand:
    100 for all of the window but its last 10 days, 70 for those (for M >= 2 the chair existed
    60 days, so the window is its 60 days)."""
    window = min(60.0, months * MONTH_DAYS)
    average = (100 * (window - 10) + 70 * 10) / window
    # The service gives the discount to 2 places; the card shows that to 1.
    return f"{average:.2f}", f"{round((average - 70) / average * 100, 2):.1f}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def scope_values(scope: str, revenue: float, top_product: int) -> dict[str, Any]:
    return {
        "product_views": 1234,
        "units_purchased": 56,
        "revenue": revenue,
        "unique_viewers": [{"store_id": "demo-0001", "product_id": 7, "users": 12}],
        "top_purchased": [
            {"rank": 1, "store_id": scope if scope != ALL else "demo-0001",
             "product_id": top_product, "units": 30},
            {"rank": 2, "store_id": "demo-0002", "product_id": 17, "units": 11},
        ],
        "top_viewed": [{"rank": 1, "store_id": "demo-0001", "product_id": 7, "views": 300}],
        "views_before_purchase": {"purchases": 17, "median": 2.0, "mean": 2.41},
        "oversold": {"oversold_units": 3, "products_affected": 2},
        "errors": {"payments": 4, "checkout": 1},
    }


def publish(client: redis.Redis, value: InsightValue) -> None:
    """What the insights job does for one value: SET the key, PUBLISH the notice."""
    client.set(key(value.scope, value.metric), json.dumps(value.payload()))
    client.publish(channel(value.scope), json.dumps(value.notice()))


def write_insights(redis_url: str, minute: datetime) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        for scope, revenue, top in [(ALL, 98765.43, 4242), ("demo-0001", 60000.0, 4242),
                                    ("demo-0002", 38765.43, 9090)]:
            for metric, value in scope_values(scope, revenue, top).items():
                hourly = metric.startswith("top_") or metric == "views_before_purchase"
                start = minute - 59 * MINUTE if hourly else minute
                publish(client, InsightValue(scope, metric, start, minute + MINUTE, value))
    finally:
        client.close()


def write_fleet(pg_dsn: str) -> None:
    """Two stores; coupons: demo-0001 issued 3 (1 redeemed), demo-0002 issued 1."""
    now = datetime.now(UTC)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        for store in ("demo-0001", "demo-0002"):
            conn.execute("INSERT INTO simulator.stores (store_id, fleet, next_cycle) "
                         "VALUES (%s, 'demo', 8)", (store,))
        conn.execute("INSERT INTO conta_verde.users (store_id, user_id, name, email) "
                     "VALUES ('demo-0001', 1, 'Ana', 'ana@example.com')")
        conn.execute("INSERT INTO conta_verde.products (store_id, product_id, name, price) "
                     "VALUES ('demo-0001', 4242, 'Lamp', 10)")
        conn.execute("INSERT INTO conta_verde.purchase_orders (order_id, store_id, user_id, "
                     "product_id, quantity, unit_price, coupon_code, created_at) "
                     "VALUES ('o-1', 'demo-0001', 1, 4242, 1, 9, 'C1', %s)", (now,))
        for code, store, order in [("C1", "demo-0001", "o-1"), ("C2", "demo-0001", None),
                                   ("C3", "demo-0001", None), ("C4", "demo-0002", None)]:
            conn.execute(
                "INSERT INTO conta_verde.coupons (coupon_code, store_id, user_id, "
                "discount_percent, issued_at, redeemed_order_id, redeemed_at) "
                "VALUES (%s, %s, 1, 10, %s, %s, %s)",
                (code, store, now, order, now if order else None))


def write_price_history(pg_dsn: str) -> None:
    """demo-0002's 'Garden chair': 100 for 50 days, 70 for the last 10, so against its 3-month
    average (95) it is 26.3% off, a deal; dated through the trigger's storefleet.price_time."""
    now = datetime.now(UTC)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        for days, price, statement in [
            (60, 100, "INSERT INTO conta_verde.products (store_id, product_id, name, price) "
                      "VALUES ('demo-0002', 77, 'Garden chair', %s)"),
            (10, 70, "UPDATE conta_verde.products SET price = %s "
                     "WHERE store_id = 'demo-0002' AND product_id = 77"),
            # Steady at 40 for 60 days: no deal until the test lowers it.
            (60, 40, "INSERT INTO conta_verde.products (store_id, product_id, name, price) "
                     "VALUES ('demo-0001', 88, 'Desk lamp', %s)"),
        ]:
            with conn.transaction():
                conn.execute(sql.SQL("SET LOCAL storefleet.price_time = {}").format(
                    sql.Literal((now - timedelta(days=days)).isoformat())))
                conn.execute(statement, (price,))


@pytest.fixture
def price_monitor(redis_url: str, pg_dsn: str, tmp_path: Path) -> Iterator[MonitorService]:
    service = MonitorService(pg_dsn, redis_url, tmp_path)
    service.start()
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture
def dashboard_url(redis_url: str, pg_dsn: str, tmp_path: Path,
                  price_monitor: MonitorService) -> Iterator[str]:
    port = free_port()
    log_path = tmp_path / "dashboard.log"
    env = {**os.environ, "STOREFLEET_REDIS_URL": redis_url, "STOREFLEET_PG_DSN": pg_dsn,
           "STOREFLEET_DASHBOARD_DB_POLL_SECONDS": "0.5"}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", "from storefleet.cli import main; main()",
             "dashboard", "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.fail(f"dashboard exited ({process.returncode}):\n{log_path.read_text()}")
            try:
                with urllib.request.urlopen(url + "liveness", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"dashboard did not answer in 60 s:\n{log_path.read_text()}")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(15)


@pytest.fixture
def browser() -> Iterator[Chromium]:
    executable = chromium_path()
    if executable is None:
        pytest.fail("chromium is not installed: run `make setup`")
    chromium = Chromium(executable)
    try:
        yield chromium
    finally:
        chromium.close()


def test_dashboard_shows_insights_and_live_updates(
    redis_url: str, pg_dsn: str, dashboard_url: str, browser: Chromium
) -> None:
    minute = datetime.now(UTC).replace(second=0, microsecond=0) - MINUTE
    write_insights(redis_url, minute)
    write_fleet(pg_dsn)
    write_price_history(pg_dsn)

    browser.navigate(dashboard_url)
    browser.wait_for_text(
        "Revenue / min 98,765.43", "demo-0001 4242 30",
        "Median views 2.0", "Mean views 2.41", "Units beyond stock 3", "payments 4",
        "Issued 4", "Redeemed 1", "demo-0002 demo 7",
        "Price deals", "demo-0002 Garden chair 70.00 95.00 26.3 %",
    )

    # A newer minute, pushed through pub/sub: the open page follows without reloading.
    client = redis.Redis.from_url(redis_url)
    try:
        publish(client, InsightValue(ALL, "revenue", minute + MINUTE, minute + 2 * MINUTE,
                                     12345.67))
    finally:
        client.close()
    browser.wait_for_text("Revenue / min 12,345.67", deadline_seconds=30)
    browser.screenshot(SCREENSHOT)

    browser.navigate(dashboard_url + "?scope=demo-0002")
    browser.wait_for_text("Revenue / min 38,765.43", "demo-0002 9090 30",
                          "Issued 1", "Redeemed 0")

    # The deals card asks the service: new inputs, the service's new answer.
    browser.navigate(dashboard_url)
    browser.wait_for_text("demo-0002 Garden chair 70.00 95.00 26.3 %")
    run_js(browser, "sfSet('Period (months)', '1')")
    average, discount = garden_chair_deal(1)
    browser.wait_for_text(f"demo-0002 Garden chair 70.00 {average} {discount} %")
    run_js(browser, "sfSet('Discount at least (%)', '30')")
    browser.wait_for_text("no product 30% or more below its 1-month average")
    run_js(browser, "sfSet('Discount at least (%)', '20')")
    browser.wait_for_text(f"demo-0002 Garden chair 70.00 {average} {discount} %")

    # A user's watch: made from the card's question, then a price change shows up live.
    browser.navigate(dashboard_url + "?owner=ana")
    browser.wait_for_text("ana has no watches yet")
    run_js(browser, "sfSet('Period (months)', '1')")
    run_js(browser, "sfSet('Discount at least (%)', '20')")
    browser.wait_for_text(f"demo-0002 Garden chair 70.00 {average} {discount} %")
    run_js(browser, "sfClick('Watch these deals')")
    browser.wait_for_text("20.0 % below the 1 month average, all stores",
                          f"Garden chair 70.00 {average} {discount} %")
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("UPDATE conta_verde.products SET price = 20 "
                     "WHERE store_id = 'demo-0001' AND product_id = 88")
    # The desk lamp: 40 for the whole month, 20 from now: 50 % off its 1-month average.
    browser.wait_for_text("demo-0001 Desk lamp 20.00 40.00 50.0 %", deadline_seconds=30)
    browser.screenshot(SCREENSHOT)

    outside = [u for u in browser.requested
               if not u.startswith(("http://127.0.0.1", "data:", "blob:"))]
    assert outside == [], f"the page requested assets from outside: {outside}"
    assert browser.console_errors == []
