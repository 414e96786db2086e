"""The price monitor on real PostgreSQL: exact deals on crafted histories, the maintained
integral against a plain recomputation, and the standing watch telling each new deal once."""

from __future__ import annotations

import json
import os
import queue
import random
import re
import secrets
import subprocess
import sys
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import psycopg
import pytest
import redis

from storefleet.fleet import PriceUpdater
from storefleet.prices.monitor import DealWatch, find_deals
from storefleet.prices.rpc import REQUESTS_KEY, ask, ask_deals, deals_channel
from storefleet.prices.settings import ROLE
from storefleet.prices.updater import MONTH, backfill, update_prices
from tests.conftest import wait_for
from tests.integration.price_monitor_service import MonitorService

pytestmark = pytest.mark.services

AT = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
W = Decimal(2_630_016)  # one month (30.44 days) in seconds


@pytest.fixture
def conn(pg_dsn: str):
    with psycopg.connect(pg_dsn, autocommit=True) as connection:
        yield connection


def add_product(conn: psycopg.Connection, store_id: str, product_id: int,
                steps: list[tuple[datetime, float]]) -> None:
    """A product whose prices are `steps` (time, price), written as the updater does: INSERT then
    UPDATEs of products.price, each dated through storefleet.price_time for the trigger."""
    for n, (at, price) in enumerate(steps):
        with conn.transaction():
            conn.execute("SELECT set_config('storefleet.price_time', %s, true)", (at.isoformat(),))
            if n == 0:
                conn.execute(
                    "INSERT INTO conta_verde.products (store_id, product_id, name, price)"
                    " VALUES (%s, %s, %s, %s)",
                    (store_id, product_id, f"product {product_id}", price))
            else:
                conn.execute(
                    "UPDATE conta_verde.products SET price = %s"
                    " WHERE store_id = %s AND product_id = %s", (price, store_id, product_id))


def summary(deals) -> list[tuple[str, int, Decimal, Decimal]]:
    return [(d.store_id, d.product_id, d.current_price, d.discount_percent) for d in deals]


def pct(average: Decimal, current: Decimal) -> Decimal:
    return round((average - current) / average * 100, 2)


@pytest.fixture
def crafted(conn):
    """Histories whose one-month (M=1) averages are worked out by hand below."""
    add_product(conn, "s1", 1, [(AT - 60 * DAY, 100), (AT - MONTH / 2, 50)])
    add_product(conn, "s1", 2, [(AT - 100 * DAY, 200), (AT - 40 * DAY, 100), (AT - DAY, 90)])
    add_product(conn, "s1", 3, [(AT - 100 * DAY, 80)])
    add_product(conn, "s1", 4, [(AT - 10 * DAY, 100), (AT - 5 * DAY, 60)])
    add_product(conn, "s1", 5, [(AT - 50 * DAY, 120), (AT - MONTH / 2, 80)])
    add_product(conn, "s1", 6, [(AT - 50 * DAY, 50), (AT - 5 * DAY, 100)])
    add_product(conn, "s1", 7, [(AT - 50 * DAY, 100), (AT - timedelta(hours=2), 300),
                                (AT - timedelta(hours=1), 100)])
    add_product(conn, "s2", 1, [(AT - 60 * DAY, 100), (AT - MONTH / 4, 70)])
    add_product(conn, "s2", 2, [(AT - 20 * DAY, 100), (AT - 10 * DAY, 60)])
    # Changed after AT: invisible when evaluating at AT.
    add_product(conn, "s2", 3, [(AT - 60 * DAY, 100), (AT + DAY, 10)])
    return conn


# Worked out by hand, over the window [AT - 30.44 days, AT]:
EXPECTED_M1 = {
    # 100 for the first half of the window, 50 for the second: average 75, not 50 or 100.
    ("s1", 1): (Decimal(50), Decimal(75)),
    # The window opens on 100 (set before it; the older 200 does not count); 90 for the last day.
    ("s1", 2): (Decimal(90), (100 * (W - 86_400) + 90 * 86_400) / W),
    # No change in the window: the average is the price, never a deal.
    ("s1", 3): None,
    # Created inside the window: averaged over the 10 days it existed, 100 and 60 for 5 each.
    ("s1", 4): (Decimal(60), Decimal(80)),
    # 120 then 80 for half the window each: average exactly 100, discount exactly 20%.
    ("s1", 5): (Decimal(80), Decimal(100)),
    # Price went up: below zero discount.
    ("s1", 6): None,
    # A one-hour spike to 300: a plain mean of the window's rows (200) would call 100 a deal.
    ("s1", 7): (Decimal(100), (100 * (W - 3600) + 300 * 3600) / W),
    ("s2", 1): (Decimal(70), Decimal("92.5")),
    ("s2", 2): (Decimal(60), Decimal(80)),  # 25%, a tie with s1/4
    ("s2", 3): None,
}


def expected_deals(discount: Decimal, store: str | None = None):
    rows = []
    for (store_id, product_id), value in EXPECTED_M1.items():
        if value is None or (store and store_id != store):
            continue
        current, average = value
        if current <= average * (100 - discount) / 100:
            rows.append((store_id, product_id, current, pct(average, current),
                         current / average))
    rows.sort(key=lambda r: (r[4], r[0], r[1]))
    return [r[:4] for r in rows]


def test_deals_are_time_weighted_and_ordered_best_first(crafted) -> None:
    deals = find_deals(crafted, 1, 20, at=AT)
    assert summary(deals) == [
        ("s1", 1, Decimal("50.00"), Decimal("33.33")),
        ("s1", 4, Decimal("60.00"), Decimal("25.00")),
        ("s2", 2, Decimal("60.00"), Decimal("25.00")),
        ("s2", 1, Decimal("70.00"), Decimal("24.32")),
        ("s1", 5, Decimal("80.00"), Decimal("20.00")),
    ]
    assert summary(deals) == expected_deals(Decimal(20))
    averages = {(d.store_id, d.product_id): d.average_price for d in deals}
    assert averages == {("s1", 1): 75, ("s1", 4): 80, ("s2", 2): 80, ("s2", 1): Decimal("92.5"),
                        ("s1", 5): 100}
    assert [d.name for d in deals][:2] == ["product 1", "product 4"]


def test_the_price_in_force_at_the_window_start_counts(crafted) -> None:
    deals = {(d.store_id, d.product_id): d for d in find_deals(crafted, 1, 5, at=AT)}
    current, average = EXPECTED_M1[("s1", 2)]
    assert deals[("s1", 2)].average_price == round(average, 4)
    assert deals[("s1", 2)].discount_percent == pct(average, current) == Decimal("9.70")
    assert summary(find_deals(crafted, 1, 5, at=AT)) == expected_deals(Decimal(5))


def test_a_short_spike_weighs_only_its_hour(crafted) -> None:
    deals = {(d.store_id, d.product_id): d for d in find_deals(crafted, 1, Decimal("0.1"), at=AT)}
    assert deals[("s1", 7)].discount_percent == Decimal("0.27")
    assert ("s1", 7) not in {(d.store_id, d.product_id) for d in find_deals(crafted, 1, 1, at=AT)}


def test_products_without_a_change_in_the_window_or_a_rise_are_never_deals(crafted) -> None:
    keys = {(d.store_id, d.product_id) for d in find_deals(crafted, 1, Decimal("0.0001"), at=AT)}
    assert not keys & {("s1", 3), ("s1", 6), ("s2", 3)}


def test_the_threshold_is_inclusive_and_exact(crafted) -> None:
    at_20 = {(d.store_id, d.product_id) for d in find_deals(crafted, 1, 20, at=AT)}
    above = {(d.store_id, d.product_id) for d in find_deals(crafted, 1, "20.0001", at=AT)}
    assert ("s1", 5) in at_20 and ("s1", 5) not in above
    assert at_20 - above == {("s1", 5)}


def test_store_filter_and_limit(crafted) -> None:
    assert summary(find_deals(crafted, 1, 20, store="s2", at=AT)) == expected_deals(
        Decimal(20), "s2") == [("s2", 2, Decimal("60.00"), Decimal("25.00")),
                               ("s2", 1, Decimal("70.00"), Decimal("24.32"))]
    assert summary(find_deals(crafted, 1, 20, limit=2, at=AT)) == expected_deals(Decimal(20))[:2]
    assert find_deals(crafted, 1, 20, store="nowhere", at=AT) == []


def test_a_longer_period_averages_more_history(crafted) -> None:
    # Over 3 months s1/1 existed 60 days: 100 for 60 days - W/2, then 50 for W/2.
    exists = Decimal(60 * 86_400)
    average = (100 * (exists - W / 2) + 50 * W / 2) / exists
    deals = {(d.store_id, d.product_id): d for d in find_deals(crafted, 3, 5, at=AT)}
    assert deals[("s1", 1)].average_price == round(average, 4)
    # Over 3 months the window opens on s1/2's 200, so its discount is larger.
    w3 = 3 * W
    average2 = (200 * (w3 - 40 * 86_400) + 100 * (39 * 86_400) + 90 * 86_400) / w3
    assert deals[("s1", 2)].discount_percent == pct(average2, Decimal(90))


def test_bad_arguments_are_refused(conn) -> None:
    for months, discount in [(0, 10), (61, 10), (3, 0), (3, 100), (3, 120), ("x", 10),
                             (3, "abc")]:
        with pytest.raises(ValueError):
            find_deals(conn, months, discount)


# -- the maintained integral against a recomputation from price_history ----------------------


def seconds(delta: timedelta) -> Decimal:
    return Decimal(delta.days * 86_400 + delta.seconds) + Decimal(delta.microseconds) / 10**6


def reference_deals(conn, months: int, discount: Decimal, at: datetime):
    """The definition, computed directly from price_history in Python."""
    history = defaultdict(list)
    for store_id, product_id, price, valid_from in conn.execute(
        "SELECT store_id, product_id, price, valid_from FROM conta_verde.price_history"
        " WHERE valid_from <= %s ORDER BY store_id, product_id, valid_from, id", (at,)):
        history[(store_id, product_id)].append((valid_from, price))
    since = at - months * MONTH
    found = []
    for key, steps in history.items():
        opening = [t for t, _ in steps if t <= since]
        start = since if opening else steps[0][0]
        integral = Decimal(0)
        for n, (t, price) in enumerate(steps):
            end = steps[n + 1][0] if n + 1 < len(steps) else at
            lo, hi = max(t, start), min(end, at)
            if hi > lo:
                integral += price * seconds(hi - lo)
        duration = seconds(at - start)
        current = steps[-1][1]
        if duration > 0 and current * duration * 100 <= integral * (100 - discount):
            average = integral / duration
            found.append((current * duration / integral, key, pct(average, current)))
    found.sort()
    return [(key[0], key[1], discount_pct) for _, key, discount_pct in found]


def steps_table(conn):
    return conn.execute(
        "SELECT store_id, product_id, valid_from, history_id, price, area"
        " FROM price_monitor.price_steps ORDER BY 1, 2, 3, 4").fetchall()


def test_the_updaters_backfill_and_changes_agree_with_a_recomputation(conn) -> None:
    for store in ("demo-0000", "demo-0001"):
        conn.execute(
            "INSERT INTO conta_verde.products (store_id, product_id, name, price)"
            " SELECT %s, g, 'product ' || g, 20 + g FROM generate_series(1, 25) g", (store,))
    settings = PriceUpdater(backfillMonths=4, maxChangePercent=15, productsPerRun=20)
    rng = random.Random(7)
    assert backfill(conn, "demo", settings, rng) > 0  # rows dated before the existing ones
    for _ in range(5):
        update_prices(conn, "demo", settings, rng)
    at = conn.execute("SELECT now()").fetchone()[0]
    for months, discount in [(1, Decimal(1)), (2, Decimal("2.5")), (3, Decimal(5)),
                             (4, Decimal("0.01")), (60, Decimal(1))]:
        expected = reference_deals(conn, months, discount, at)
        got = [(d.store_id, d.product_id, d.discount_percent)
               for d in find_deals(conn, months, discount, at=at)]
        assert got == expected, (months, discount)
    assert any(reference_deals(conn, 2, Decimal(1), at))
    # Kept step by step (with the back-fill's out-of-order rows) = rebuilt in one pass.
    kept = steps_table(conn)
    conn.execute("SELECT price_monitor.rebuild_steps(NULL, NULL)")
    assert steps_table(conn) == kept
    assert len(kept) == conn.execute("SELECT count(*) FROM conta_verde.price_history").fetchone()[0]


def test_deleted_or_edited_history_is_followed(crafted) -> None:
    crafted.execute("DELETE FROM conta_verde.products WHERE store_id = 's2' AND product_id = 1")
    crafted.execute("UPDATE conta_verde.price_history SET price = 40"
                    " WHERE store_id = 's1' AND product_id = 1 AND price = 50")
    kept = steps_table(crafted)
    assert ("s2", 1) not in {(r[0], r[1]) for r in kept}
    crafted.execute("SELECT price_monitor.rebuild_steps(NULL, NULL)")
    assert steps_table(crafted) == kept
    deals = {(d.store_id, d.product_id): d for d in find_deals(crafted, 1, 20, at=AT)}
    assert deals[("s1", 1)].average_price == 70 and ("s2", 1) not in deals


# -- the standing watch ----------------------------------------------------------------------


def test_a_deal_is_told_once_until_it_stops_and_comes_back(conn) -> None:
    add_product(conn, "s1", 1, [(AT - 60 * DAY, 100), (AT - 10 * DAY, 50)])
    add_product(conn, "s1", 2, [(AT - 60 * DAY, 100)])
    watch = DealWatch(1, 10)
    assert [d.key for d in watch.check(conn, at=AT)] == [("s1", 1)]
    assert watch.check(conn, at=AT) == []
    with conn.transaction():
        conn.execute("SELECT set_config('storefleet.price_time', %s, true)",
                     ((AT - DAY).isoformat(),))
        conn.execute("UPDATE conta_verde.products SET price = 60 WHERE product_id = 2")
    assert [d.key for d in watch.check(conn, at=AT)] == [("s1", 2)]
    # s1/1 still a deal much later? Its window then holds only 50: it stops being one.
    assert watch.check(conn, at=AT + 40 * DAY) == []
    assert watch.told == set()
    assert [d.key for d in watch.check(conn, at=AT)] == [("s1", 1), ("s1", 2)]


class Lines:
    """Lines of a child's pipe, read by a thread, waited for with a deadline."""

    def __init__(self, pipe) -> None:
        self.queue: queue.Queue[str] = queue.Queue()
        self.thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self.thread.start()

    def _read(self, pipe) -> None:
        with pipe:
            for line in pipe:
                self.queue.put(line.rstrip("\n"))

    def wait_for(self, predicate, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no matching line within {timeout} s; saw {seen}")
            try:
                line = self.queue.get(timeout=remaining)
            except queue.Empty:
                continue
            seen.append(line)
            if predicate(line):
                return line


def checked(deals: int):
    pattern = re.compile(rf"checked: {deals} deals")
    return lambda line: bool(pattern.search(line))


def set_price(conn, price: float) -> None:
    conn.execute("UPDATE conta_verde.products SET price = %s WHERE store_id = 'w1'", (price,))


def test_the_watch_command_prints_each_new_deal_once(conn, pg_dsn: str) -> None:
    now = conn.execute("SELECT now()").fetchone()[0]
    add_product(conn, "w1", 1, [(now - 90 * DAY, 100)])
    add_product(conn, "w2", 1, [(now - 90 * DAY, 100)])
    child = subprocess.Popen(
        [sys.executable, "-m", "storefleet", "prices", "watch", "--months", "1",
         "--discount", "10", "--interval", "3600"],
        env={**os.environ, "STOREFLEET_PG_DSN": pg_dsn},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    out, err = Lines(child.stdout), Lines(child.stderr)
    try:
        err.wait_for(checked(0))  # listening, and nothing to tell yet
        set_price(conn, 50)
        first = json.loads(out.wait_for(lambda line: line.startswith("{")))
        assert (first["store_id"], first["product_id"], first["current_price"]) == ("w1", 1, 50)
        assert first["average_price"] == 100.0 and first["discount_percent"] == 50.0
        err.wait_for(checked(1))
        set_price(conn, 45)  # still a deal: not told again
        err.wait_for(checked(1))
        set_price(conn, 100)  # no longer a deal
        err.wait_for(checked(0))
        set_price(conn, 40)  # a deal again: told again
        again = json.loads(out.wait_for(lambda line: line.startswith("{")))
        assert (again["store_id"], again["current_price"]) == ("w1", 40)
        err.wait_for(checked(1))
    finally:
        child.terminate()
        child.wait(30)
        out.thread.join(30)
        err.thread.join(30)
    assert child.returncode == 0
    assert out.queue.empty()  # nothing else was told (e.g. the 45)


def test_the_deals_command_prints_json(crafted, pg_dsn: str) -> None:
    from click.testing import CliRunner

    from storefleet.cli import main

    result = CliRunner().invoke(
        main, ["prices", "deals", "--months", "1", "--discount", "20", "--store", "s2",
               "--at", "2026-06-01T12:00:00+0000", "--json"],
        env={"STOREFLEET_PG_DSN": pg_dsn})
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert (body["months"], body["discount"], body["store"]) == (1, 20.0, "s2")
    assert body["deals"] == [
        {"store_id": "s2", "product_id": 2, "name": "product 2", "current_price": 60.0,
         "average_price": 80.0, "discount_percent": 25.0},
        {"store_id": "s2", "product_id": 1, "name": "product 1", "current_price": 70.0,
         "average_price": 92.5, "discount_percent": 24.32},
    ]
    table = CliRunner().invoke(main, ["prices", "deals", "-m", "1", "-d", "20", "-n", "1",
                                      "--at", "2026-06-01T12:00:00"],
                               env={"STOREFLEET_PG_DSN": pg_dsn})
    assert table.exit_code == 0 and "33.33%" in table.output and "s2" not in table.output


# -- the service: HTTP, Redis request/reply and standing watches -----------------------------
# The service runs as a real child process connected as its own role (migration 0060), whose
# password the test sets with `storefleet price-monitor set-role-password`, as the chart does.

ROLE_PASSWORD = secrets.token_urlsafe(18)


@pytest.fixture(scope="session")
def role_password(services) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "storefleet", "price-monitor", "set-role-password", "--wait", "0"],
        env={**os.environ, "STOREFLEET_PG_DSN": services.pg_dsn,
             "STOREFLEET_PRICE_MONITOR_DB_PASSWORD": ROLE_PASSWORD},
        capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return ROLE_PASSWORD


@pytest.fixture
def service(pg_dsn: str, redis_url: str, role_password: str, tmp_path: Path):
    monitor = MonitorService(pg_dsn, redis_url, tmp_path, role=(ROLE, role_password))
    monitor.start()
    try:
        yield monitor
    finally:
        monitor.stop()


@pytest.fixture
def rclient(redis_url: str):
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def expected_json(discount: Decimal, store: str | None = None, limit: int | None = None):
    """The hand-computed deals of EXPECTED_M1 as the service's JSON gives them."""
    rows = []
    for store_id, product_id, current, discount_pct in expected_deals(discount, store):
        _, average = EXPECTED_M1[(store_id, product_id)]
        rows.append({"store_id": store_id, "product_id": product_id,
                     "name": f"product {product_id}", "current_price": float(current),
                     "average_price": float(round(average, 2)),
                     "discount_percent": float(discount_pct)})
    return rows[:limit] if limit else rows


def test_http_redis_and_the_query_agree_with_hand_computed_deals(crafted, service,
                                                                rclient) -> None:
    at = AT.isoformat()
    for discount, store, limit in [(20, None, None), (5, None, None), (20, "s2", None),
                                   (20, None, 2), ("0.1", "s1", None)]:
        expected = expected_json(Decimal(discount), store, limit)
        keys = {(d["store_id"], d["product_id"]) for d in expected}
        if discount == 20 and store is None and limit is None:
            # Changed inside the period (s1/1), exactly at D% (s1/5); unchanged s1/3 never.
            assert {("s1", 1), ("s1", 5)} <= keys and ("s1", 3) not in keys
        params = {"months": 1, "discount": discount, "at": at}
        params.update({k: v for k, v in {"store": store, "limit": limit}.items() if v})
        response = service.get("/v1/deals", **params)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["deals"] == expected, params
        assert (body["months"], body["store"], body["limit"]) == (1, store, limit)
        assert datetime.fromisoformat(body["as_of"]) == AT

        status, reply = ask_deals(rclient, 1, discount, store=store, limit=limit, at=at,
                                  timeout=30)
        assert (status, reply) == (200, body)

        found = find_deals(crafted, 1, discount, store=store, limit=limit, at=AT)
        assert [d.as_json() for d in found] == expected
    # 20.0001% leaves out the product exactly at 20%, in every way of asking.
    above = service.get("/v1/deals", months=1, discount="20.0001", at=at).json()["deals"]
    assert ("s1", 5) not in {(d["store_id"], d["product_id"]) for d in above}
    assert ask_deals(rclient, 1, "20.0001", at=at, timeout=30)[1]["deals"] == above


BAD_REQUESTS = [
    ({"months": 0, "discount": 10}, "months"),
    ({"months": 61, "discount": 10}, "months"),
    ({"months": "two", "discount": 10}, "months"),
    ({"discount": 10}, "months"),
    ({"months": 3, "discount": 0}, "discount"),
    ({"months": 3, "discount": 100}, "discount"),
    ({"months": 3, "discount": -5}, "discount"),
    ({"months": 3}, "discount"),
    ({"months": 3, "discount": 10, "limit": 0}, "limit"),
    ({"months": 3, "discount": 10, "limit": -1}, "limit"),
    ({"months": 3, "discount": 10, "store": "a:b"}, "store"),
]


def test_bad_input_is_refused_naming_the_field_and_no_query_runs(crafted, service,
                                                                 rclient, pg_dsn) -> None:
    # While this transaction holds price_steps exclusively, any deals query would block: every
    # refusal answered meanwhile was given without running one.
    with psycopg.connect(pg_dsn) as locker:
        locker.execute("LOCK TABLE price_monitor.price_steps IN ACCESS EXCLUSIVE MODE")
        # The lock works: a good request cannot be answered while it is held.
        with pytest.raises(httpx.ReadTimeout):
            httpx.get(service.url + "/v1/deals", params={"months": 1, "discount": 20},
                      timeout=1.0)
        for params, field in BAD_REQUESTS:
            response = service.get("/v1/deals", **params)
            assert response.status_code == 400, (params, response.text)
            body = response.json()
            assert body["field"] == field and field in body["error"], (params, body)
            # Over Redis a missing field arrives as null: refused the same way.
            status, reply = ask_deals(rclient, params.get("months"), params.get("discount"),
                                      store=params.get("store"), limit=params.get("limit"),
                                      timeout=10)
            assert status == 400 and reply["field"] == field, (params, reply)
        missing = service.get("/v1/deals", months=1, discount=20, store="nowhere")
        assert missing.status_code == 404
        assert missing.json() == {"error": "unknown store 'nowhere': it has no products",
                                  "field": "store"}
        assert ask_deals(rclient, 1, 20, store="nowhere", timeout=10) == (404, missing.json())
        for body, field in [({"months": 0, "discount": 10}, "months"),
                            ({"months": 1, "discount": 100}, "discount"),
                            ({"months": 1, "discount": 10, "colour": "red"}, "colour")]:
            response = service.post("/v1/watches", body)
            assert response.status_code == 400 and response.json()["field"] == field
        response = service.post("/v1/watches", {"months": 1, "discount": 10, "store": "nowhere"})
        assert response.status_code == 404 and response.json()["field"] == "store"
        locker.rollback()
    # Nothing was stored by the refused watches; a Redis request missing fields is refused too.
    assert service.get("/v1/watches").json() == {"watches": []}
    rclient.rpush(REQUESTS_KEY, json.dumps({"id": "no-months", "discount": 10}))
    reply = json.loads(rclient.blpop(["storefleet:prices:replies:no-months"], timeout=30)[1])
    assert reply["status"] == 400 and reply["body"]["field"] == "months"
    metrics = service.get("/metrics").text
    assert 'storefleet_price_monitor_requests_total{status="400",way="http"}' in metrics


def new_deal_messages(pubsub, count: int, timeout: float = 60.0) -> list[dict]:
    got: list[dict] = []
    deadline = time.monotonic() + timeout
    while len(got) < count:
        assert time.monotonic() < deadline, f"only {got} within {timeout} s"
        message = pubsub.get_message(timeout=1.0)
        if message and message["type"] == "message":
            got.append(json.loads(message["data"]))
    return got


def test_a_watch_tells_new_deals_and_survives_a_restart(conn, service, rclient) -> None:
    now = conn.execute("SELECT now()").fetchone()[0]
    for store in ("w1", "w2", "w3"):
        add_product(conn, store, 1, [(now - 90 * DAY, 100)])
    response = service.post("/v1/watches", {"months": 1, "discount": 10, "owner": "ana"})
    assert response.status_code == 201, response.text
    watch = response.json()
    assert (watch["months"], watch["discount"], watch["store"], watch["owner"]) == (
        1, 10, None, "ana")
    watch_id = watch["id"]
    pubsub = rclient.pubsub()
    pubsub.subscribe(deals_channel(watch_id))
    try:
        wait_for(lambda: service.get(f"/v1/watches/{watch_id}").json()["checked_at"], 30,
                 "first check of the watch")
        assert service.get(f"/v1/watches/{watch_id}/deals").json()["deals"] == []

        # A price change makes w1 a deal: published at once and kept.
        conn.execute("UPDATE conta_verde.products SET price = 50 WHERE store_id = 'w1'")
        [told] = new_deal_messages(pubsub, 1)
        assert (told["watch_id"], told["store_id"], told["product_id"]) == (watch_id, "w1", 1)
        assert (told["current_price"], told["average_price"], told["discount_percent"]) == (
            50.0, 100.0, 50.0)
        kept = service.get(f"/v1/watches/{watch_id}/deals").json()["deals"]
        assert [(d["store_id"], d["seq"]) for d in kept] == [("w1", told["seq"])]

        # Down: the watch stays in PostgreSQL; w2 becomes a deal while nobody watches.
        service.stop()
        conn.execute("UPDATE conta_verde.products SET price = 60 WHERE store_id = 'w2'")
        service.start()
        assert service.get("/v1/watches", owner="ana").json()["watches"][0]["id"] == watch_id
        [missed] = new_deal_messages(pubsub, 1)
        assert (missed["store_id"], missed["current_price"]) == ("w2", 60.0)
        # After the restart a new change is told as before; w1 and w2 are not told again.
        conn.execute("UPDATE conta_verde.products SET price = 40 WHERE store_id = 'w3'")
        [later] = new_deal_messages(pubsub, 1)
        assert (later["store_id"], later["current_price"], later["discount_percent"]) == (
            "w3", 40.0, 60.0)
        kept = service.get(f"/v1/watches/{watch_id}/deals").json()["deals"]
        assert [(d["store_id"], d["current_price"]) for d in kept] == [
            ("w1", 50.0), ("w2", 60.0), ("w3", 40.0)]
        after = service.get(f"/v1/watches/{watch_id}/deals", after=kept[0]["seq"]).json()
        assert [d["store_id"] for d in after["deals"]] == ["w2", "w3"]
        assert pubsub.get_message(timeout=0.5) is None
    finally:
        pubsub.close()
    assert service.get("/v1/watches/nope/deals").status_code == 404
    assert httpx.delete(f"{service.url}/v1/watches/{watch_id}").status_code == 204
    assert service.get(f"/v1/watches/{watch_id}").status_code == 404


def test_the_service_role_reads_prices_and_writes_only_watches(pg_dsn, role_password) -> None:
    with psycopg.connect(pg_dsn, user=ROLE, password=role_password, autocommit=True) as conn:
        conn.execute("SELECT count(*) FROM conta_verde.products, price_monitor.price_steps")
        for statement in ["UPDATE conta_verde.products SET price = 1",
                          "DELETE FROM price_monitor.price_steps",
                          "SELECT count(*) FROM conta_verde.users",
                          "SELECT count(*) FROM analytics.events"]:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)


def test_the_service_serves_its_openapi_document_and_health(service) -> None:
    document = service.get("/openapi.json").json()
    assert {"/v1/deals", "/v1/watches", "/v1/watches/{watch_id}/deals"} <= set(document["paths"])
    names = [p["name"] for p in document["paths"]["/v1/deals"]["get"]["parameters"]]
    assert names == ["months", "discount", "store", "limit", "at"]
    assert service.get("/healthz").status_code == 200
    assert service.get("/readyz").json() == {"status": "ready"}


def test_watches_over_redis_as_the_dashboard_keeps_them(conn, service, rclient) -> None:
    now = conn.execute("SELECT now()").fetchone()[0]
    add_product(conn, "r1", 1, [(now - 90 * DAY, 100)])
    status, watch = ask(rclient, "create_watch", {"months": 1, "discount": "20", "store": "r1",
                                                   "owner": "bo"}, timeout=30)
    assert status == 201 and (watch["store"], watch["owner"], watch["discount"]) == (
        "r1", "bo", 20)
    status, listed = ask(rclient, "watches", {"owner": "bo"}, timeout=30)
    assert status == 200 and [w["id"] for w in listed["watches"]] == [watch["id"]]
    assert ask(rclient, "watches", {"owner": "nobody"}, timeout=30) == (200, {"watches": []})
    wait_for(lambda: service.get(f"/v1/watches/{watch['id']}").json()["checked_at"], 30,
             "first check")
    conn.execute("UPDATE conta_verde.products SET price = 70 WHERE store_id = 'r1'")

    def kept():
        status, body = ask(rclient, "watch_deals", {"watch_id": watch["id"]}, timeout=30)
        assert status == 200
        return body["deals"]

    [deal] = wait_for(kept, 30, "the watch's deal")
    assert (deal["store_id"], deal["current_price"], deal["discount_percent"]) == ("r1", 70, 30)
    assert ask(rclient, "watch_deals", {"watch_id": "nope"}, timeout=30)[0] == 404
    assert ask(rclient, "watch_deals", {"watch_id": watch["id"], "after": -1}, timeout=30)[1][
        "field"] == "after"
    assert ask(rclient, "dance", {}, timeout=30)[1]["field"] == "op"
    assert ask(rclient, "create_watch", {"months": 1, "discount": 20, "store": "zz"},
               timeout=30)[0] == 404
