"""`storefleet bench freshness`: from a purchase accepted by the webhook to the insight in Redis.

Reads: the endpoints from the environment if set (else private local services); a private
database and topic per run. Starts `storefleet webhook` and `storefleet insights run` as the
processes they are in production, then, once the job is warm, posts one purchase at a time for a
store never seen before and times from the webhook's 202 to the pub/sub notice of that store's
`units_purchased` key (read back to check it holds the purchase).
Writes: one JSON object on stdout: p50_s, p95_s, max_s, samples, trigger_seconds.
Run: `storefleet bench freshness --json [--samples 40] [--trigger-seconds 1]`.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import click


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def post_events(port: int, token: str, events: list[dict[str, Any]]) -> int:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", "/v1/events", body=json.dumps(events).encode(),
                     headers={"Authorization": f"Bearer {token}",
                              "Content-Type": "application/json"})
        answer = conn.getresponse()
        answer.read()
        return answer.status
    finally:
        conn.close()


def wait_ready(port: int, process: subprocess.Popen, timeout: float = 90) -> None:
    import http.client

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise click.ClickException("the webhook exited at start")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise click.ClickException("the webhook was not ready in time")


@click.command("freshness")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--samples", type=int, default=40, show_default=True)
@click.option("--trigger-seconds", type=float, default=1.0, show_default=True)
@click.option("--warmup-timeout", type=float, default=240, show_default=True)
def command(as_json: bool, samples: int, trigger_seconds: float, warmup_timeout: float) -> None:
    """Measure event accepted -> insight visible in Redis (target p95 <= 5 s)."""
    import redis

    from storefleet.bench._insights import bench_environment, event
    from storefleet.bench.ingest import free_port, storefleet_argv
    from storefleet.insights.contract import PREFIX, key

    run = uuid.uuid4().hex[:6]
    result: dict[str, Any] = {"benchmark": "freshness", "cpus": os.cpu_count(),
                              "trigger_seconds": trigger_seconds}
    with bench_environment("freshness") as bench:
        token, port = secrets.token_urlsafe(16), free_port()
        env = {**os.environ, **bench.env(), "STOREFLEET_INGEST_TOKEN": token,
               "STOREFLEET_SPARK_MASTER": "local[2]"}
        children = [
            subprocess.Popen(storefleet_argv("webhook", "--host", "127.0.0.1", "--port",
                                             str(port)),
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True),
            subprocess.Popen(storefleet_argv("insights", "run", "--trigger-seconds",
                                             str(trigger_seconds)),
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True),
        ]
        client = redis.Redis.from_url(bench.endpoints.redis_url)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            wait_ready(port, children[0])
            pubsub.psubscribe(f"{PREFIX}:fresh-{run}-*")
            # Warm-up: the first micro-batches compile code and create state stores.
            started = time.monotonic()
            warm = f"warm-{run}"
            while time.monotonic() - started < warmup_timeout:
                now = datetime.now(UTC)
                assert post_events(port, token, [event(f"{warm}-{uuid.uuid4().hex}", now, warm,
                                                       1, "purchase", 1)]) == 202
                if client.get(key(warm, "units_purchased")):
                    break
                time.sleep(1)
            else:
                raise click.ClickException("the insights job produced nothing during warm-up")
            delays = []
            for i in range(samples):
                store = f"fresh-{run}-{i:04d}"
                purchase = event(f"{store}-p", datetime.now(UTC), store, 1, "purchase", 7, 3)
                if post_events(port, token, [purchase]) != 202:
                    raise click.ClickException("the webhook refused a purchase")
                accepted = time.monotonic()
                deadline = accepted + 60
                while time.monotonic() < deadline:
                    message = pubsub.get_message(timeout=0.05)
                    if message and json.loads(message["data"]).get("metric") == "units_purchased" \
                            and json.loads(message["data"])["scope"] == store:
                        break
                else:
                    raise click.ClickException(f"no insight for {store} within 60 s")
                delays.append(time.monotonic() - accepted)
                stored = json.loads(client.get(key(store, "units_purchased")))
                assert stored["value"] == 3, stored
                # Spread the samples over the trigger interval.
                time.sleep(trigger_seconds * ((i * 0.37) % 1.0))
        finally:
            pubsub.close()
            client.close()
            for child in children:
                if child.poll() is None:
                    os.killpg(child.pid, signal.SIGTERM)
            for child in children:
                try:
                    child.wait(60)
                except subprocess.TimeoutExpired:
                    os.killpg(child.pid, signal.SIGKILL)
    result.update(samples=len(delays), p50_s=round(quantile(delays, 0.5), 3),
                  p95_s=round(quantile(delays, 0.95), 3), max_s=round(max(delays), 3))
    click.echo(json.dumps(result) if as_json else
               f"freshness p50 {result['p50_s']} s, p95 {result['p95_s']} s over {len(delays)}")
