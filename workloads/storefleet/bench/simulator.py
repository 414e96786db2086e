"""`storefleet bench simulator`: how many stores one simulator process drives at default activity.

Reads: STOREFLEET_PG_DSN if set (else starts private services in a temporary folder).
Writes: one JSON object on stdout (`--json`). Uses a fresh database (migrated, dropped after),
a temporary DataCat folder and a local event sink (`storefleet.simulator.sink`, a separate
process that accepts batches with 202), so only the simulator's own cost is measured.
Run: `storefleet bench simulator --json [--probe-stores 300]`.

1. probe: `--probe-stores` stores run cycles back to back (after a warm-up cycle that creates
   their initial users and products); the work per store-cycle gives an estimate and the
   event rate (`events_per_s`, events generated, written and accepted by the sink per second).
2. verify: that many fresh stores run at the default activity (5-second cycles, 15 users a
   cycle) for `--verify-cycles` cycles; they pass when every cycle started on time and its work
   took less than the cycle. On a miss the count drops by a quarter; with much room left it
   grows towards `--headroom` of the cycle; at most `--max-attempts` runs.
`stores_per_process` is the largest count verified on time.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import click
import psycopg

from storefleet.fleet import Fleet, FleetSpec
from storefleet.simulator.settings import SimulatorSettings
from storefleet.simulator.simulation import RunStats, Simulator

TOKEN = "bench-token"


def _with_database(dsn: str, name: str) -> str:
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(dsn)
    params["dbname"] = name
    return make_conninfo(**params)


def _run(dsn: str, url: str, logs: Path, first: int, count: int, cycles: int,
         cycle_seconds: float) -> RunStats:
    spec = FleetSpec.model_validate(
        {"stores": first + count, "simulation": {"cycleSeconds": cycle_seconds, "seed": 1}}
    )
    settings = SimulatorSettings(
        fleet=Fleet(name="bench", spec=spec), store_from=first, store_to=first + count,
        ingest_url=f"{url}/v1/events", ingest_token=TOKEN, logs_dir=logs, pg_dsn=dsn,
        kafka_bootstrap=None, coupons_topic="coupons", cycles=cycles,
    )
    return Simulator(settings, flush_timeout=120).run()


@click.command("simulator")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (always JSON).")
@click.option("--probe-stores", type=click.IntRange(min=1), default=300, show_default=True)
@click.option("--probe-cycles", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--verify-cycles", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--headroom", type=click.FloatRange(0.1, 1.0), default=0.8, show_default=True,
              help="Share of a cycle the work may fill.")
@click.option("--max-attempts", type=click.IntRange(min=1), default=3, show_default=True,
              help="Verification runs at most (each about verify-cycles x 5 s).")
def command(as_json: bool, probe_stores: int, probe_cycles: int, verify_cycles: int,
            headroom: float, max_attempts: int) -> None:
    """Stores one simulator process sustains with cycles on time, and its event rate."""
    import logging

    logging.basicConfig(level=logging.ERROR)
    from storefleet.bench.ingest import PrivateServices
    from storefleet.db.migrate import apply_migrations

    default_cycle = FleetSpec().simulation.cycle_seconds
    logs = Path(tempfile.mkdtemp(prefix="storefleet-bench-logs-"))
    sink = subprocess.Popen(
        [sys.executable, "-m", "storefleet.simulator.sink", "--token", TOKEN],
        stdout=subprocess.PIPE, text=True,
    )
    database = f"bench_sim_{uuid.uuid4().hex[:8]}"
    try:
        url = f"http://127.0.0.1:{int(sink.stdout.readline())}"
        with PrivateServices() as endpoints:
            with psycopg.connect(endpoints.pg_dsn, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{database}"')
            dsn = _with_database(endpoints.pg_dsn, database)
            try:
                apply_migrations(dsn)
                # 1. probe: warm-up cycle (initial users and products), then cycles back to back.
                _run(dsn, url, logs, 0, probe_stores, 1, 0.001)
                probe = _run(dsn, url, logs, 0, probe_stores, probe_cycles, 0.001)
                per_cycle = probe.elapsed_seconds / probe.cycles
                events_per_s = probe.events / probe.elapsed_seconds
                estimate = max(1, int(probe_stores * default_cycle * headroom / per_cycle))
                # 2. verify at the default activity, on fresh stores.
                first = probe_stores
                attempts = []
                stores = estimate
                while len(attempts) < max_attempts:
                    _run(dsn, url, logs, first, stores, 1, 0.001)
                    run = _run(dsn, url, logs, first, stores, verify_cycles, default_cycle)
                    worst = max(run.work_seconds)
                    on_time = run.late_cycles == 0 and worst < default_cycle and run.flushed
                    attempts.append({"stores": stores, "late_cycles": run.late_cycles,
                                     "max_cycle_work_s": round(worst, 3), "on_time": on_time})
                    first += stores
                    if not on_time:
                        stores = max(1, int(stores * 0.75))
                    elif worst < headroom * 0.85 * default_cycle:
                        # Plenty of room left: try more, aiming at `headroom` of the cycle.
                        stores = int(stores * min(1.5, headroom * default_cycle / worst))
                    else:
                        break
            finally:
                with psycopg.connect(endpoints.pg_dsn, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    finally:
        sink.terminate()
        sink.wait(10)
        shutil.rmtree(logs, ignore_errors=True)
    verified = max((a["stores"] for a in attempts if a["on_time"]), default=0)
    result = {
        "benchmark": "simulator",
        "stores_per_process": verified,
        "events_per_s": round(events_per_s),
        "cycle_seconds": default_cycle,
        "users_per_cycle": FleetSpec().simulation.users_per_cycle,
        "events_per_store_cycle": round(probe.events / (probe.cycles * probe_stores), 1),
        "probe": {"stores": probe_stores, "cycles": probe.cycles,
                  "seconds_per_cycle": round(per_cycle, 3), "estimate": estimate},
        "verify": attempts,
    }
    click.echo(json.dumps(result))
