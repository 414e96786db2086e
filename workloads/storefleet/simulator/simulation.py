"""The simulator loop: every cycle, all stores of the process act and report on three channels.

Order of a cycle, chosen so a crash at any point leaves the channels consistent after restart:
1. read price changes and pending coupons from Conta Verde;
2. run every store's cycle in memory;
3. one transaction: the Conta Verde rows, each store's next cycle number, and an outbox row per
   store holding the cycle's events and DataCat file;
4. write the DataCat files (temp name, then rename);
5. hand the events to the sender; once the webhook has accepted them, the outbox rows go.
At start, outbox rows left by a previous process are delivered first (files written if missing,
events re-sent with their original ids, which downstream de-duplicates).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from storefleet.simulator import datacat
from storefleet.simulator.contaverde import ContaVerde
from storefleet.simulator.coupons import CouponInbox
from storefleet.simulator.sender import EventSender
from storefleet.simulator.settings import SimulatorSettings
from storefleet.simulator.store import StoreModel

log = logging.getLogger("storefleet.simulator")


@dataclass
class RunStats:
    stores: int = 0
    cycles: int = 0
    events: int = 0
    purchases: int = 0
    redemptions: int = 0
    replayed_cycles: int = 0
    late_cycles: int = 0
    # Seconds each cycle's work took (model, Conta Verde, files, hand-over to the sender).
    work_seconds: list[float] = field(default_factory=list)
    elapsed_seconds: float = 0.0
    flushed: bool = True


class Simulator:
    def __init__(self, settings: SimulatorSettings, *, stop: threading.Event | None = None,
                 clock=time.time, flush_timeout: float = 20.0) -> None:
        self.settings = settings
        self.stop = stop or threading.Event()
        self.clock = clock
        self.flush_timeout = flush_timeout
        self.stats = RunStats(stores=len(settings.store_ids))
        self.sender: EventSender | None = None

    def run(self) -> RunStats:
        s = self.settings
        ids = s.store_ids
        period = s.fleet.spec.simulation.cycle_seconds
        started = time.monotonic()
        cv = ContaVerde(s.pg_dsn, s.fleet.name)
        inbox_stop = threading.Event()
        inbox = None
        sender = self.sender = EventSender(
            s.ingest_url, s.ingest_token, max_buffered=s.buffer_events,
            batch_events=s.batch_events,
        )
        try:
            states = cv.load_stores(ids)
            stores = {
                sid: StoreModel(sid, s.fleet.spec.simulation, seed=s.seed,
                                next_cycle=st.next_cycle, users=st.users, products=st.products)
                for sid, st in states.items()
            }
            log.info("simulating %d stores of fleet %s (%s .. %s), resuming at cycle %d",
                     len(ids), s.fleet.name, ids[0], ids[-1],
                     min(m.next_cycle for m in stores.values()))
            sender.start()
            ticks: dict[int, list[tuple[str, int]]] = {}
            tick = 0
            for entry in cv.outbox(ids):
                datacat.write_file(s.logs_dir, entry.store_id, entry.cycle, entry.datacat,
                                   only_if_missing=True)
                sender.put(tick, entry.events)
                ticks[tick] = [(entry.store_id, entry.cycle)]
                tick += 1
                self.stats.replayed_cycles += 1
            if self.stats.replayed_cycles:
                log.info("re-delivering %d cycles a previous run committed but had not finished",
                         self.stats.replayed_cycles)
            if s.kafka_bootstrap:
                inbox = CouponInbox(s.kafka_bootstrap, s.coupons_topic, s.fleet.name, s.pg_dsn,
                                    inbox_stop)
                inbox.start()
            else:
                log.warning("STOREFLEET_KAFKA_BOOTSTRAP not set: coupons will not be received")

            next_at = time.monotonic()
            last_behind = 0.0
            while not self.stop.is_set() and (s.cycles is None or self.stats.cycles < s.cycles):
                delay = next_at - time.monotonic()
                if delay > 0 and self.stop.wait(delay):
                    break
                began = time.monotonic()
                if began - next_at > period:
                    self.stats.late_cycles += 1
                    if began - last_behind > 10:
                        last_behind = began
                        log.warning("behind: cycle started %.1fs late (cycleSeconds %.1f);"
                                    " the process drives more stores than it can keep up with"
                                    " or the webhook is slow", began - next_at, period)
                    next_at = began
                self._cycle(cv, stores, sender, ticks, tick)
                tick += 1
                self.stats.work_seconds.append(time.monotonic() - began)
                self.stats.cycles += 1
                next_at += period
            self.stats.flushed = sender.flush(self.flush_timeout)
            if not self.stats.flushed:
                log.warning("stopping with %d events not yet accepted; they stay in the outbox"
                            " and are sent at the next start", sender.buffered)
            cv.clear_outbox(self._acked(ticks, sender.acked_tick))
        finally:
            inbox_stop.set()
            sender.close()
            if inbox is not None:
                inbox.join(timeout=10)
            cv.close()
            self.stats.elapsed_seconds = time.monotonic() - started
        return self.stats

    @staticmethod
    def _acked(ticks: dict[int, list[tuple[str, int]]], acked_tick: int) -> list[tuple[str, int]]:
        done = []
        for t in [t for t in ticks if t <= acked_tick]:
            done.extend(ticks.pop(t))
        return done

    def _cycle(self, cv: ContaVerde, stores: dict[str, StoreModel], sender: EventSender,
               ticks: dict[int, list[tuple[str, int]]], tick: int) -> None:
        s = self.settings
        ids = s.store_ids
        for store_id, product_id, price in cv.price_changes(ids):
            stores[store_id].set_price(product_id, price)
        pending = cv.pending_coupons(ids)
        for store_id, model in stores.items():
            model.hold_coupons(pending.get(store_id, []))
        now_ms = int(self.clock() * 1000)
        outputs = [model.run_cycle(now_ms) for model in stores.values()]
        cv.write_cycle(outputs, self._acked(ticks, sender.acked_tick))
        events = []
        for out in outputs:
            datacat.write_file(s.logs_dir, out.store_id, out.cycle, out.datacat)
            events.extend(out.events)
            self.stats.purchases += len(out.orders)
            self.stats.redemptions += len(out.redemptions)
        self.stats.events += len(events)
        ticks[tick] = [(out.store_id, out.cycle) for out in outputs]
        if not sender.put(tick, events, stop=self.stop):
            log.warning("stopping while the event buffer is full: the last cycle's events stay"
                        " in the outbox and are sent at the next start")
