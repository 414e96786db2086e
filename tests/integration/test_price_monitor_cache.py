"""The price monitor's fast path (migration 0065, price_monitor.window_ends) gives exactly the
answers of the probing query, on real PostgreSQL, for randomized histories: windows opening
exactly on a change, products without a change in the window, changes arriving (appended or
back-dated) after the cache was filled, products added or deleted after it."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from storefleet.prices.monitor import deals_from_rows, deals_sql, find_deals
from storefleet.prices.updater import MONTH

PERIODS = (1, 2, 5)


@pytest.fixture(scope="module")
def db(services):
    """One database for the module (hypothesis runs many examples per test); emptied per
    example by `fresh`."""
    import uuid

    from tests.conftest import TEMPLATE_DB, database_dsn

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(services.pg_dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE_DB}"')
    with psycopg.connect(database_dsn(services.pg_dsn, name), autocommit=True) as conn:
        yield conn
    with psycopg.connect(services.pg_dsn, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def fresh(conn: psycopg.Connection) -> datetime:
    """Empty the database; returns the base instant (three years ago) histories start from."""
    conn.execute("DELETE FROM conta_verde.products")
    conn.execute("TRUNCATE price_monitor.window_ends, price_monitor.window_periods")
    now = conn.execute("SELECT now()").fetchone()[0]
    return (now - timedelta(days=3 * 365)).replace(microsecond=0)


def add_step(conn: psycopg.Connection, key: tuple[str, int], at: datetime, price: int) -> None:
    conn.execute(
        "INSERT INTO conta_verde.price_history (store_id, product_id, price, valid_from)"
        " VALUES (%s, %s, %s, %s)", (key[0], key[1], price, at))


def add_product(conn: psycopg.Connection, key: tuple[str, int]) -> None:
    conn.execute(
        "INSERT INTO conta_verde.products (store_id, product_id, name, price)"
        " VALUES (%s, %s, %s, 1)", (key[0], key[1], f"product {key[1]}"))


def answers(deals) -> list[tuple]:
    return [(d.store_id, d.product_id, d.name, d.current_price, d.average_price,
             d.discount_percent) for d in deals]


def compare(conn: psycopg.Connection, at: datetime, discount: Decimal) -> None:
    """For every period: the fast path (refresh, then read), and the cached read without a
    refresh (rows possibly stale: those products are probed), agree with the probing query."""
    for months in PERIODS:
        for store in (None, "s1"):
            for limit in (None, 2):
                slow = answers(find_deals(conn, months, discount, store, limit, at=at,
                                          cached=False))
                params = {"months": months, "discount": discount, "store": store,
                          "limit": limit, "at": at}
                if conn.execute("SELECT FROM price_monitor.window_periods WHERE months = %s",
                                (months,)).fetchone():
                    unrefreshed = deals_from_rows(conn.execute(
                        deals_sql(store is not None, limit is not None, cached=True),
                        params).fetchall())
                    assert answers(unrefreshed) == slow, (months, store, limit, at)
                fast = answers(find_deals(conn, months, discount, store, limit, at=at,
                                          cached=True))
                assert fast == slow, (months, store, limit, at)


def rows_valid_at(conn: psycopg.Connection, months: int, at: datetime) -> int:
    return conn.execute(
        "SELECT count(*) FROM price_monitor.window_ends"
        " WHERE months = %s AND valid_since <= %s AND %s < valid_until",
        (months, at, at)).fetchone()[0]


KEYS = [("s1", 1), ("s1", 2), ("s1", 3), ("s2", 1), ("s2", 2)]
# Offsets in seconds from the base instant; prices in whole units (1..200).
step_st = st.tuples(st.integers(0, 3 * 365 * 86_400 - 86_400), st.integers(1, 200))
history_st = st.lists(step_st, min_size=0, max_size=5)


# No shrinking: each example writes a database; a failing example is printed as drawn.
@settings(max_examples=25, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(histories=st.lists(history_st, min_size=len(KEYS), max_size=len(KEYS)),
       discount=st.sampled_from([Decimal("0.01"), Decimal(5), Decimal(20), Decimal("33.3")]),
       data=st.data())
def test_the_fast_path_answers_exactly_as_the_probing_query(db, histories, discount,
                                                            data) -> None:
    base = fresh(db)
    changes = []
    for key, history in zip(KEYS, histories, strict=True):
        add_product(db, key)
        for offset, price in history:
            add_step(db, key, base + timedelta(seconds=offset), price)
            changes.append(base + timedelta(seconds=offset))
    # Instants to evaluate at, increasing as the service's now() does: random ones, and ones
    # where a period's window opens exactly on a change or the instant is a change.
    end = base + timedelta(days=3 * 365)
    instants = data.draw(st.lists(st.integers(0, 3 * 365 * 86_400), min_size=2, max_size=4))
    picked = [base + timedelta(seconds=s) for s in instants]
    for change in changes[:3]:
        months = data.draw(st.sampled_from(PERIODS))
        picked += [change + months * MONTH, change]
    picked = sorted(t for t in picked if t <= end)
    for n, at in enumerate(picked):
        compare(db, at, discount)
        compare(db, at, discount)  # the first call of a period only adds its rows
        if n == len(picked) - 1:
            break
        # Changes arriving after the cache was filled: appended (dated up to the next
        # instant) and, sometimes, back-dated before existing steps (the updater's back-fill),
        # a product added, a product deleted.
        nxt = picked[n + 1]
        span = max(1, int((nxt - at).total_seconds()))
        alive = set(db.execute(
            "SELECT store_id, product_id FROM conta_verde.products").fetchall())
        for key in data.draw(st.lists(st.sampled_from(KEYS), max_size=3)):
            if key not in alive:
                continue
            offset = data.draw(st.integers(0, span))
            add_step(db, key, at + timedelta(seconds=offset), data.draw(st.integers(1, 200)))
        if data.draw(st.booleans()):
            key = data.draw(st.sampled_from(KEYS))
            if key in alive:
                back = timedelta(seconds=data.draw(st.integers(0, 86_400 * 400)))
                add_step(db, key, base + back, data.draw(st.integers(1, 200)))
        if data.draw(st.booleans()):
            key = ("s1", 100 + n)
            add_product(db, key)
            add_step(db, key, at - timedelta(days=data.draw(st.integers(0, 90))),
                     data.draw(st.integers(1, 200)))
        if data.draw(st.integers(0, 4)) == 0:
            db.execute("DELETE FROM conta_verde.products WHERE store_id = 's2' AND"
                       " product_id = (SELECT min(product_id) FROM conta_verde.products"
                       " WHERE store_id = 's2')")


def test_the_cache_is_used_and_follows_a_new_price(pg_dsn: str) -> None:
    """After two calls every product's row holds at the instant (the read probes nothing); a
    price change ends the product's rows of every period at once, and the next call recomputes
    only that row."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        now = conn.execute("SELECT now()").fetchone()[0]
        for n in range(1, 6):
            with conn.transaction():  # the product's first price dated 100 days ago
                conn.execute("SELECT set_config('storefleet.price_time', %s, true)",
                             ((now - timedelta(days=100)).isoformat(),))
                conn.execute("INSERT INTO conta_verde.products (store_id, product_id, name,"
                             " price) VALUES ('s1', %s, %s, 100)", (n, f"product {n}"))
            add_step(conn, ("s1", n), now - timedelta(days=10), 100 - 10 * n)
        assert find_deals(conn, 1, 5) == find_deals(conn, 1, 5, at=now, cached=False) != []
        for months in (1, 3):
            find_deals(conn, months, 5)
            find_deals(conn, months, 5)
            at = conn.execute("SELECT now()").fetchone()[0]
            assert rows_valid_at(conn, months, at) == 5
        # A new price now (through products.price, as the updater does).
        conn.execute("UPDATE conta_verde.products SET price = 500"
                     " WHERE store_id = 's1' AND product_id = 5")
        at = conn.execute("SELECT now()").fetchone()[0]
        assert rows_valid_at(conn, 1, at) == 4 and rows_valid_at(conn, 3, at) == 4
        refreshed = conn.execute("SELECT price_monitor.refresh_window_ends(1, now())").fetchone()
        assert refreshed == (1,)
        at = conn.execute("SELECT now()").fetchone()[0]
        assert rows_valid_at(conn, 1, at) == 5
        assert ("s1", 5) not in {d.key for d in find_deals(conn, 1, 5)}
        assert answers(find_deals(conn, 3, 5)) == answers(
            find_deals(conn, 3, 5, at=conn.execute("SELECT now()").fetchone()[0], cached=False))


def test_the_read_only_role_refreshes_through_the_function_only(pg_dsn: str) -> None:
    """The service's role (0060) reads the cache and brings it up to date by
    refresh_window_ends (0065), but cannot write the cache's tables itself."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        now = conn.execute("SELECT now()").fetchone()[0]
        with conn.transaction():
            conn.execute("SELECT set_config('storefleet.price_time', %s, true)",
                         ((now - timedelta(days=60)).isoformat(),))
            add_product(conn, ("s1", 1))
        add_step(conn, ("s1", 1), now - timedelta(days=20), 100)
        add_step(conn, ("s1", 1), now - timedelta(days=1), 50)
        conn.execute("SET ROLE storefleet_price_monitor")
        first = answers(find_deals(conn, 1, 10))  # adds the period's rows
        assert answers(find_deals(conn, 1, 10)) == first != []  # computes them
        at = conn.execute("SELECT now()").fetchone()[0]
        assert rows_valid_at(conn, 1, at) == 1
        for statement in ("UPDATE price_monitor.window_ends SET valid_until = 'infinity'",
                          "DELETE FROM price_monitor.window_ends",
                          "INSERT INTO price_monitor.window_periods (months) VALUES (2)"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
