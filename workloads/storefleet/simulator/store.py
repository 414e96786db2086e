"""One simulated store: its users, products, stock and held coupons, and what a cycle does.

A cycle adds users and products, lets some users walk the user-flow graph and returns everything
that happened as one `CycleOutput`: the rows for Conta Verde, the events for Cadê Analytics and
the DataCat file, built from the same walk so the three channels agree by construction. Every
purchase is one `purchase` event, one `Audit;BUY` line and one purchase order, and the order id is
the purchase event's id.

The model is pure (no I/O). With a seed, a cycle's random choices depend only on (seed, store,
cycle), so a seeded run is reproducible and a restarted store continues the same way.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from storefleet.fleet import Simulation
from storefleet.simulator import userflow

_FIRST = ("Ana", "Bruno", "Carla", "Diego", "Elisa", "Fabio", "Gabriela", "Heitor", "Isabel",
          "Joao", "Karina", "Lucas", "Marina", "Nuno", "Olivia", "Pedro", "Rafaela", "Sofia",
          "Tiago", "Vitoria")
_LAST = ("Silva", "Santos", "Oliveira", "Souza", "Lima", "Pereira", "Costa", "Rocha", "Almeida",
         "Carvalho", "Gomes", "Ribeiro", "Martins", "Barbosa", "Fonseca")
_STREETS = ("Rua das Flores", "Avenida Atlantica", "Rua do Catete", "Rua Voluntarios da Patria",
            "Avenida Paulista", "Rua Augusta", "Praia de Botafogo")
_CITIES = ("Rio de Janeiro", "Sao Paulo", "Belo Horizonte", "Recife", "Curitiba", "Salvador")
_ADJECTIVES = ("Classic", "Smart", "Eco", "Ultra", "Compact", "Deluxe", "Portable", "Vintage",
               "Wireless", "Organic", "Premium", "Mini")
_NOUNS = ("Lamp", "Backpack", "Headphones", "Coffee Maker", "Sneakers", "Watch", "Notebook",
          "Blender", "Camera", "Chair", "Jacket", "Speaker", "Kettle", "Sunglasses", "Keyboard")
ERROR_COMPONENTS = ("auth", "catalog", "search", "cart", "checkout", "payment", "shipping")
_ERRORS = (("E500", "internal error"), ("E502", "bad gateway from upstream"),
           ("E503", "dependency unavailable"), ("E504", "upstream timeout"),
           ("E409", "conflicting update"), ("E429", "rate limited"))

QUANTITY_CHOICES = (1, 1, 1, 1, 2, 2, 3)


@lru_cache(maxsize=4096)
def _second_prefix(second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


def rfc3339_ms(ms: int) -> str:
    """Epoch milliseconds as RFC 3339 UTC with milliseconds, e.g. 2026-11-26T16:00:00.123Z."""
    second, rest = divmod(ms, 1000)
    return f"{_second_prefix(second)}.{rest:03d}Z"


def clean(text: str) -> str:
    """A DataCat field: no separator, no line break."""
    return text.replace(";", ",").replace("\n", " ").replace("\r", " ")


@dataclass
class Product:
    price: float
    stock: int


@dataclass(frozen=True)
class HeldCoupon:
    code: str
    user_id: int
    discount_percent: float
    issued_ms: int


@dataclass
class CycleOutput:
    store_id: str
    cycle: int
    new_users: list[tuple] = field(default_factory=list)
    new_products: list[tuple] = field(default_factory=list)
    stock: dict[int, int] = field(default_factory=dict)
    # (order_id, user_id, product_id, quantity, unit_price, coupon_code, oversold, created_at)
    orders: list[tuple] = field(default_factory=list)
    # (coupon_code, order_id, redeemed_at)
    redemptions: list[tuple] = field(default_factory=list)
    events: list[bytes] = field(default_factory=list)
    datacat: str = ""
    error_lines: int = 0


class StoreModel:
    """A store's state between cycles and the rules of a cycle."""

    def __init__(
        self,
        store_id: str,
        settings: Simulation,
        *,
        seed: int | None = None,
        next_cycle: int = 1,
        users: Sequence[int] | None = None,
        products: dict[int, Product] | None = None,
    ) -> None:
        self.store_id = store_id
        self.settings = settings
        self.seed = seed
        self.next_cycle = next_cycle
        # Ids are handed out in sequence, so the users are usually the range 1..n: kept as a
        # range (no memory per user); a list only if Conta Verde holds gaps.
        self.users: Sequence[int]
        if isinstance(users, range):
            self.users = users
        else:
            ordered = sorted(users or [])
            contiguous = ordered == list(range(1, len(ordered) + 1))
            self.users = range(1, len(ordered) + 1) if contiguous else ordered
        self.products: dict[int, Product] = dict(products or {})
        self.product_ids: list[int] = sorted(self.products)
        self.next_user_id = (self.users[-1] + 1) if self.users else 1  # sorted either way
        self.next_product_id = (max(self.product_ids) + 1) if self.product_ids else 1
        # user_id -> coupons not yet redeemed, oldest first.
        self.coupons: dict[int, list[HeldCoupon]] = {}
        self._coupon_codes: set[str] = set()

    # -- state fed from outside ------------------------------------------------------------
    def set_price(self, product_id: int, price: float) -> None:
        product = self.products.get(product_id)
        if product is not None:
            product.price = price

    def hold_coupons(self, coupons: list[HeldCoupon]) -> None:
        """Replace the coupons held with the pending ones read from Conta Verde."""
        self.coupons = {}
        self._coupon_codes = set()
        for coupon in sorted(coupons, key=lambda c: (c.issued_ms, c.code)):
            if coupon.code in self._coupon_codes:
                continue
            self._coupon_codes.add(coupon.code)
            self.coupons.setdefault(coupon.user_id, []).append(coupon)

    # -- the cycle ---------------------------------------------------------------------------
    def _rng(self, cycle: int) -> random.Random:
        if self.seed is None:
            return random.Random()
        return random.Random(f"{self.seed}:{self.store_id}:{cycle}")

    def run_cycle(self, end_ms: int) -> CycleOutput:
        """Simulate the cycle that ends at `end_ms` (epoch ms); events fall in the cycle before."""
        sim = self.settings
        cycle = self.next_cycle
        rng = self._rng(cycle)
        out = CycleOutput(self.store_id, cycle)
        span_ms = max(1, int(sim.cycle_seconds * 1000))
        start_ms = end_ms - span_ms
        first = not self.users and not self.product_ids
        changed_stock: set[int] = set()

        new_users = sim.new_users_per_cycle + (sim.initial_users if first else 0)
        new_products = sim.new_products_per_cycle + (sim.initial_products if first else 0)
        if not self.product_ids and new_products == 0:
            new_products = 1  # a store needs something to sell
        for _ in range(new_users):
            out.new_users.append(self._new_user(rng, start_ms))
        for _ in range(new_products):
            pid, row = self._new_product(rng, start_ms)
            out.new_products.append(row)
            changed_stock.add(pid)
        # Restock some nearly sold-out products, as a real store would.
        for pid in self.product_ids:
            product = self.products[pid]
            if product.stock < 5 and rng.random() < 0.25:
                product.stock += rng.randint(20, 100)
                changed_stock.add(pid)

        lines: list[tuple[int, str]] = []
        events: list[tuple[int, bytes]] = []
        counter = [0]
        visitors = self._visitors(rng, sim.users_per_cycle)
        for user_id in visitors:
            self._visit(rng, out, user_id, start_ms, span_ms, lines, events, counter,
                        changed_stock)

        for pid in changed_stock:
            out.stock[pid] = self.products[pid].stock
        lines.sort(key=lambda item: item[0])
        events.sort(key=lambda item: item[0])
        out.events = [payload for _, payload in events]
        out.datacat = "timestamp;store_id;type;content;extra_1;extra_2\n" + "".join(
            line for _, line in lines
        )
        self.next_cycle = cycle + 1
        return out

    def _new_user(self, rng: random.Random, at_ms: int) -> tuple:
        uid = self.next_user_id
        self.next_user_id += 1
        if isinstance(self.users, range):
            self.users = range(1, uid + 1) if uid == len(self.users) + 1 else [*self.users, uid]
        else:
            self.users.append(uid)
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        address = f"{rng.choice(_STREETS)}, {rng.randint(1, 2000)} - {rng.choice(_CITIES)}"
        birth = f"{rng.randint(1950, 2007)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        email = f"{first}.{last}.{uid}@{self.store_id}.example".lower()
        return (uid, f"{first} {last}", email, address, birth, rfc3339_ms(at_ms))

    def _new_product(self, rng: random.Random, at_ms: int) -> tuple[int, tuple]:
        pid = self.next_product_id
        self.next_product_id += 1
        price = round(max(1.0, math.exp(rng.gauss(math.log(40.0), 0.8))), 2)
        self.products[pid] = Product(price=price, stock=rng.randint(10, 100))
        self.product_ids.append(pid)
        name = f"{rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)} {pid}"
        return pid, (pid, name, f"/images/{self.store_id}/{pid}.jpg", price, rfc3339_ms(at_ms))

    def _visitors(self, rng: random.Random, wanted: int) -> list[int]:
        # Users told of a coupon come back first: the e-commerce app notified them.
        holders = sorted(u for u, held in self.coupons.items() if held)[:wanted]
        taken = set(holders)
        rest = wanted - len(holders)
        pool_size = len(self.users) - len(taken)
        if rest <= 0 or pool_size <= 0:
            return holders
        chosen = [u for u in rng.sample(self.users, min(len(self.users), rest + len(taken)))
                  if u not in taken]
        return holders + chosen[:rest]

    def _visit(self, rng, out, user_id, start_ms, span_ms, lines, events, counter,
               changed_stock) -> None:
        sim = self.settings
        store = self.store_id
        nodes = userflow.walk(rng)
        # Times of this visit: a start within the cycle, then ordered steps after it.
        begin = start_ms + int(rng.random() * span_ms * 0.5)
        width = max(len(nodes), int((start_ms + span_ms - 1 - begin) * (0.3 + 0.7 * rng.random())))
        offsets = sorted(rng.randrange(width) for _ in range(len(nodes) + 4))
        times = iter(begin + o for o in offsets)
        cart: dict[int, int] = {}
        current: int | None = None

        def emit(ts: int, kind: str, product_id: int | None = None, quantity: int | None = None,
                 unit_price: float | None = None, coupon_code: str | None = 0) -> str:
            # Formatted by hand: every field is a number or a string without quotes or escapes
            # (store ids are DNS labels), except the coupon code, which json.dumps quotes.
            counter[0] += 1
            event_id = f"{store}.{out.cycle}.{counter[0]}"
            text = (f'{{"event_id":"{event_id}","ts":"{rfc3339_ms(ts)}","store_id":"{store}",'
                    f'"user_id":{user_id},"type":"{kind}"')
            if product_id is not None:
                text += f',"product_id":{product_id}'
            if quantity is not None:
                text += f',"quantity":{quantity}'
            if unit_price is not None:
                text += f',"unit_price":{unit_price!r}'
            if coupon_code != 0:
                text += f',"coupon_code":{json.dumps(coupon_code)}'
            events.append((ts, (text + "}").encode()))
            return event_id

        def log(ts: int, kind: str, content: str, extra_1: str = "", extra_2: str = "") -> None:
            lines.append((ts, f"{rfc3339_ms(ts)};{store};{kind};{content};{extra_1};{extra_2}\n"))

        uid = str(user_id)
        for node in nodes:
            ts = next(times)
            if node == userflow.LOGIN:
                emit(ts, "login")
                log(ts, "Audit", "LOGIN", uid)
            elif node == userflow.HOME:
                emit(ts, "home")
                log(ts, "User", "HOME", uid)
            elif node == userflow.VIEW_PRODUCT:
                current = rng.choice(self.product_ids)
                emit(ts, "product_view", product_id=current)
                log(ts, "User", f"VIEW_PRODUCT {current}", uid)
            elif node == userflow.CART:
                quantity = rng.choice(QUANTITY_CHOICES)
                cart[current] = cart.get(current, 0) + quantity
                emit(ts, "add_to_cart", product_id=current, quantity=quantity)
                log(ts, "User", f"ADD_TO_CART {current}", uid, str(quantity))
            elif node == userflow.CHECKOUT:
                emit(ts, "checkout")
                log(ts, "User", "CHECKOUT " + ",".join(map(str, cart)), uid)
                for pid, wanted in cart.items():
                    self._purchase(rng, out, user_id, pid, wanted, ts, emit, log, changed_stock)
                cart = {}
            else:  # EXIT
                emit(ts, "exit")
                log(ts, "Audit", "EXIT", uid)
        if rng.random() < sim.error_rate:
            ts = begin + rng.randrange(width)
            code, message = rng.choice(_ERRORS)
            log(ts, "Error", rng.choice(ERROR_COMPONENTS), code, message)
            out.error_lines += 1

    def _purchase(self, rng, out, user_id, pid, wanted, ts, emit, log, changed_stock) -> None:
        product = self.products[pid]
        oversold = 0
        if product.stock >= wanted:
            quantity = wanted
        elif rng.random() < self.settings.oversell_rate:
            quantity = wanted
            oversold = wanted - product.stock
        elif product.stock > 0:
            quantity = product.stock
        else:
            return  # sold out: the line is dropped at checkout
        product.stock = max(0, product.stock - quantity)
        changed_stock.add(pid)
        unit_price = product.price
        coupon_code = None
        held = self.coupons.get(user_id)
        if held and held[0].issued_ms < ts:
            coupon = held.pop(0)
            coupon_code = coupon.code
            unit_price = round(unit_price * (1 - coupon.discount_percent / 100), 2)
        order_id = emit(ts, "purchase", product_id=pid, quantity=quantity, unit_price=unit_price,
                        coupon_code=coupon_code)
        log(ts, "Audit", "BUY", str(user_id), f"{pid}x{quantity}")
        created = rfc3339_ms(ts)
        out.orders.append((order_id, user_id, pid, quantity, unit_price, coupon_code, oversold,
                           created))
        if coupon_code is not None:
            out.redemptions.append((coupon_code, order_id, created))
