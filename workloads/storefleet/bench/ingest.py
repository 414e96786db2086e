"""`storefleet bench ingest`: events per second the webhook gets acknowledged by Kafka.

Reads: STOREFLEET_KAFKA_BOOTSTRAP if set (else starts private services in a temporary folder),
or `--url` of a running webhook (its token from STOREFLEET_INGEST_TOKEN).
Writes: one JSON object on stdout (`--json`); events into a fresh topic that is deleted after.
Run: `storefleet bench ingest --json [--seconds 10] [--workers 2] [--batch-size 1000]`.

Physical limit measured in the same run: a bare librdkafka producer (the webhook's own producer
configuration, `--bare-processes` processes) sending the same canonical messages with the same
keys into the same topic for the same time, best effort (messages made before the clock starts,
librdkafka's batch API, every delivery report counted). The batched phase is cut into `--rounds`
slices, each between two bare runs of the same length (bare, batched, bare, ..., bare);
`batched_vs_bare_producer` is the batched events/s over the bare events/s, each bare run weighed
by the slices next to it, and `batched_vs_bare_producer_per_round` gives each slice's ratio
against its two neighbours (DESIGN.md §6 target: >= 0.5). The machine is shared: compare
ratios of one run, not absolute figures across runs.

The load comes from a separate process (an asyncio client on raw keep-alive connections), so
client and server compete for the same two cores as they would on a laptop, while the bare
producer has the machine to itself: the ratio is conservative. The JSON says how many client
processes ran and how many cores the client kept busy (`batched_client_cpu_cores`). Phases:
batched posts (`batch_size` events each) interleaved with the bare producer, then single-event
posts; only 202 answers count, and the topic's offsets are checked against the 202s
at the end.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

EVENT_TEMPLATES = (
    b'{"event_id":"%s","ts":"%s","store_id":"bench-%04d","user_id":%d,'
    b'"type":"product_view","product_id":%d}',
    b'{"event_id":"%s","ts":"%s","store_id":"bench-%04d","user_id":%d,'
    b'"type":"add_to_cart","product_id":%d,"quantity":2}',
    b'{"event_id":"%s","ts":"%s","store_id":"bench-%04d","user_id":%d,'
    b'"type":"purchase","product_id":%d,"quantity":1,"unit_price":19.9,"coupon_code":null}',
    b'{"event_id":"%s","ts":"%s","store_id":"bench-%04d","user_id":%d,'
    b'"type":"home"}',
)


class EventSource:
    """Unique, valid events as JSON bytes, cheap enough not to be the bottleneck.

    Event times are a minute before the source was made: inside the webhook's time window.
    """

    def __init__(self, prefix: str) -> None:
        from datetime import UTC, datetime, timedelta

        from storefleet.events.contract import format_ts

        self.prefix = prefix.encode()
        self.counter = 0
        self.ts = format_ts(datetime.now(UTC) - timedelta(minutes=1)).encode()

    def event(self) -> bytes:
        self.counter += 1
        n = self.counter
        template = EVENT_TEMPLATES[n & 3]
        event_id = b"%s-%d" % (self.prefix, n)
        if template is EVENT_TEMPLATES[3]:
            return template % (event_id, self.ts, n % 64, n % 5000)
        return template % (event_id, self.ts, n % 64, n % 5000, n % 997)

    def body(self, size: int) -> bytes:
        if size == 1:
            return self.event()
        return b"[" + b",".join([self.event() for _ in range(size)]) + b"]"


@dataclass
class PhaseResult:
    requests: int
    events: int
    failures: dict[str, int]
    seconds: float
    latencies_ms: list[float]
    # CPU time (user + system) the client process(es) used, warm-up included.
    client_cpu_seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.latencies_ms)

        def quantile(q: float) -> float | None:
            if not ordered:
                return None
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)

        return {
            "requests": self.requests,
            "events": self.events,
            "seconds": round(self.seconds, 3),
            "requests_per_s": round(self.requests / self.seconds, 1) if self.seconds else 0,
            "events_per_s": round(self.events / self.seconds, 1) if self.seconds else 0,
            "p50_ms": quantile(0.50),
            "p99_ms": quantile(0.99),
            "failures": self.failures,
            "client_cpu_seconds": round(self.client_cpu_seconds, 2),
        }


class _Connection(asyncio.Protocol):
    """One keep-alive connection sending one request at a time and timing each answer."""

    def __init__(self, phase: _Phase) -> None:
        self.phase = phase
        self.buffer = b""
        self.sent_at = 0.0
        self.events = 0
        self.transport: asyncio.Transport | None = None
        self.closed = phase.loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._send()

    def _send(self) -> None:
        phase = self.phase
        if time.perf_counter() >= phase.stop_at:
            self.transport.close()
            return
        self.events = phase.batch_size
        request = phase.request()
        self.sent_at = time.perf_counter()
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buffer[:end]
        length_at = head.lower().find(b"content-length:")
        length = 0
        if length_at >= 0:
            line_end = head.find(b"\r\n", length_at)
            length = int(head[length_at + 15 : line_end if line_end > 0 else None])
        if len(self.buffer) < end + 4 + length:
            return
        self.buffer = self.buffer[end + 4 + length :]
        self.phase.record(int(head[9:12]), self.events, time.perf_counter() - self.sent_at)
        self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class _Phase:
    def __init__(self, url: str, token: str, batch_size: int, prefix: str) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.batch_size = batch_size
        self.source = EventSource(prefix)
        self.head = (
            f"POST /v1/events HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
            "Content-Length: "
        ).encode()
        self.loop = asyncio.get_running_loop()
        self.stop_at = 0.0
        self.measure_from = 0.0
        self.result = PhaseResult(0, 0, {}, 0.0, [])

    def request(self) -> bytes:
        body = self.source.body(self.batch_size)
        return b"%s%d\r\n\r\n%s" % (self.head, len(body), body)

    def record(self, status: int, events: int, seconds: float) -> None:
        if time.perf_counter() < self.measure_from:
            return
        result = self.result
        result.requests += 1
        if status == 202:
            result.events += events
            result.latencies_ms.append(seconds * 1000)
        else:
            result.failures[str(status)] = result.failures.get(str(status), 0) + 1

    async def run(self, connections: int, warmup: float, seconds: float) -> PhaseResult:
        started = time.perf_counter()
        self.measure_from = started + warmup
        self.stop_at = self.measure_from + seconds
        conns = []
        for _ in range(connections):
            _, protocol = await self.loop.create_connection(
                lambda: _Connection(self), self.host, self.port
            )
            conns.append(protocol)
        await asyncio.gather(*(c.closed for c in conns))
        self.result.seconds = min(time.perf_counter(), self.stop_at) - self.measure_from
        return self.result


def _client_main(
    url: str, token: str, batch_size: int, connections: int, warmup: float, seconds: float,
    prefix: str, out: Any,
) -> None:
    """Entry of the load-generating process."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass

    async def go() -> PhaseResult:
        return await _Phase(url, token, batch_size, prefix).run(connections, warmup, seconds)

    cpu_from = time.process_time()
    result = asyncio.run(go())
    result.client_cpu_seconds = time.process_time() - cpu_from
    out.send(result)
    out.close()


def run_load(
    url: str, token: str, batch_size: int, connections: int, warmup: float, seconds: float,
    processes: int = 1,
) -> PhaseResult:
    """Drive the webhook from `processes` separate client processes; merged result."""
    context = multiprocessing.get_context("spawn")
    pipes, children = [], []
    for index in range(processes):
        receiver, sender = context.Pipe(duplex=False)
        prefix = f"b{uuid.uuid4().hex[:8]}-{index}"
        child = context.Process(
            target=_client_main,
            args=(url, token, batch_size, connections, warmup, seconds, prefix, sender),
        )
        child.start()
        pipes.append(receiver)
        children.append(child)
    merged = PhaseResult(0, 0, {}, 0.0, [])
    for receiver, child in zip(pipes, children, strict=True):
        if not receiver.poll(warmup + seconds + 120):
            child.kill()
            raise click.ClickException("a load client did not finish")
        part: PhaseResult = receiver.recv()
        child.join()
        merged.requests += part.requests
        merged.events += part.events
        merged.seconds = max(merged.seconds, part.seconds)
        merged.client_cpu_seconds += part.client_cpu_seconds
        merged.latencies_ms.extend(part.latencies_ms)
        for status, count in part.failures.items():
            merged.failures[status] = merged.failures.get(status, 0) + count
    return merged


# -- the physical limit: a bare producer ------------------------------------------------------


def _bare_producer_main(bootstrap: str, topic: str, warmup: float, seconds: float,
                        out: Any) -> None:
    """Produce the webhook's canonical messages as fast as librdkafka takes them; events/s.

    Best effort: the messages (canonical value, key) are made before the clock starts, and go
    in chunks of 1000 through `produce_batch`, librdkafka's batch API, as the webhook's own
    producer sends each request; each delivery report is counted.
    """
    from confluent_kafka import Producer

    from storefleet.events.contract import decode_event, encode
    from storefleet.ingest.producer import producer_config
    from storefleet.ingest.settings import IngestSettings

    source = EventSource(f"bare{uuid.uuid4().hex[:6]}")
    chunks = []
    for _ in range(200):  # made before the clock starts: only producing is measured
        chunk = []
        for _ in range(1000):
            event = decode_event(source.event())
            chunk.append({"value": encode(event), "key": event.kafka_key()})
        chunks.append(chunk)
    producer = Producer(producer_config(IngestSettings("unused", bootstrap, topic)))
    delivered = [0]
    measuring = [False]

    def report(err: Any, _msg: Any) -> None:
        if err is None and measuring[0]:
            delivered[0] += 1

    produce_batch, poll = producer.produce_batch, producer.poll
    started = time.perf_counter()
    measure_from, stop_at = started + warmup, started + warmup + seconds
    n = 0
    while True:
        now = time.perf_counter()
        if now >= stop_at:
            break
        if not measuring[0] and now >= measure_from:
            measuring[0] = True
        chunk = chunks[n % len(chunks)]
        n += 1
        if produce_batch(topic, chunk, on_delivery=report) < len(chunk):
            for message in chunk:  # queue full: the refused ones are marked; wait a little
                message.pop("_error", None)
            poll(0.01)
        poll(0)
    measuring[0] = False
    producer.flush(30)
    out.send(delivered[0] / seconds)
    out.close()


def run_bare_producer(bootstrap: str, topic: str, warmup: float, seconds: float,
                      processes: int = 1) -> float:
    """Events/s that `processes` bare producers (one process each) get acknowledged into
    `topic`, summed."""
    context = multiprocessing.get_context("spawn")
    pipes, children = [], []
    for _ in range(processes):
        receiver, sender = context.Pipe(duplex=False)
        child = context.Process(target=_bare_producer_main,
                                args=(bootstrap, topic, warmup, seconds, sender))
        child.start()
        pipes.append(receiver)
        children.append(child)
    total = 0.0
    for receiver, child in zip(pipes, children, strict=True):
        if not receiver.poll(warmup + seconds + 180):
            child.kill()
            raise click.ClickException("the bare producer did not finish")
        total += receiver.recv()
        child.join()
    return total


# -- orchestration ---------------------------------------------------------------------------


def wait_ready(url: str, timeout: float, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise click.ClickException(f"the webhook exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise click.ClickException(f"the webhook at {url} was not ready within {timeout:.0f}s")


def storefleet_argv(*args: str) -> list[str]:
    return [sys.executable, "-c", "from storefleet.cli import main; main()", *args]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrivateServices:
    """The endpoints from the environment, or private local services started for the bench."""

    def __init__(self) -> None:
        self.manager = None
        self.endpoints = None

    def __enter__(self) -> Any:
        from storefleet.endpoints import SettingError, from_env

        try:
            self.endpoints = from_env()
        except SettingError:
            from storefleet.services.manager import ServicesManager

            state_dir = Path(tempfile.mkdtemp(prefix="storefleet-bench-"))
            state_dir.chmod(0o755)
            ports = {"postgres": 0, "redis": 0, "kafka": 0, "kafka_controller": 0}
            self.manager = ServicesManager(state_dir, requested_ports=ports)
            click.echo(f"starting private services in {state_dir}", err=True)
            self.endpoints = self.manager.up()
        return self.endpoints

    def __exit__(self, *exc: object) -> None:
        if self.manager is not None:
            self.manager.down()


def topic_message_count(bootstrap: str, topic: str) -> int:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4()}"})
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        total = 0
        for partition in metadata.topics[topic].partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), 10)
            total += high - low
        return total
    finally:
        consumer.close()


@click.command("ingest")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--url", default=None, help="A running webhook (token from STOREFLEET_INGEST_TOKEN).")
@click.option("--seconds", type=float, default=10.0, show_default=True, help="Per phase.")
@click.option("--warmup", type=float, default=2.0, show_default=True)
@click.option("--workers", type=int, default=2, show_default=True, help="Webhook processes.")
@click.option("--batch-size", type=int, default=1000, show_default=True)
@click.option("--batch-connections", type=int, default=8, show_default=True)
@click.option("--single-connections", type=int, default=64, show_default=True)
@click.option("--clients", type=int, default=1, show_default=True, help="Client processes.")
@click.option("--bare-processes", type=int, default=1, show_default=True,
              help="Bare producer processes (each its own librdkafka producer).")
@click.option("--rounds", type=click.IntRange(1, 20), default=3, show_default=True,
              help="Batched slices, each between two bare producer runs.")
def command(
    as_json: bool, url: str | None, seconds: float, warmup: float, workers: int, batch_size: int,
    batch_connections: int, single_connections: int, clients: int, bare_processes: int,
    rounds: int,
) -> None:
    """Measure batched and single-event ingest throughput and latency."""
    from storefleet.topics import Topic, ensure_topics

    result: dict[str, Any] = {"benchmark": "ingest", "cpus": os.cpu_count()}
    with PrivateServices() as endpoints:
        webhook = None
        topic = None
        token = os.environ.get("STOREFLEET_INGEST_TOKEN", "")
        try:
            if url is None:
                topic = f"bench-ingest-{uuid.uuid4().hex[:8]}"
                ensure_topics(endpoints.kafka_bootstrap, [Topic(topic, 6)])
                token = secrets.token_urlsafe(24)
                port = free_port()
                url = f"http://127.0.0.1:{port}"
                env = {
                    **os.environ,
                    **endpoints.as_env(),
                    "STOREFLEET_INGEST_TOKEN": token,
                    "STOREFLEET_EVENTS_TOPIC": topic,
                }
                webhook = subprocess.Popen(
                    storefleet_argv("webhook", "--host", "127.0.0.1", "--port", str(port),
                                    "--workers", str(workers)),
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
                result["webhook_workers"] = workers
            elif not token:
                raise click.ClickException("--url needs STOREFLEET_INGEST_TOKEN")
            wait_ready(url, 60, webhook)
            # The batched phase is cut into `rounds` slices, each between two bare producer
            # runs of the same length (bare, batched, bare, ..., bare): on a shared machine the
            # load of others drifts, and interleaving exposes both sides to the same drift.
            bare_runs: list[float] = []
            batched = PhaseResult(0, 0, {}, 0.0, [])
            round_ratios: list[float] = []
            slice_s = seconds / rounds
            for index in range(rounds):
                if topic is not None and index == 0:
                    bare_runs.append(run_bare_producer(endpoints.kafka_bootstrap, topic, warmup,
                                                       slice_s, bare_processes))
                part = run_load(url, token, batch_size, batch_connections, warmup, slice_s,
                                clients)
                if topic is not None:
                    bare_runs.append(run_bare_producer(endpoints.kafka_bootstrap, topic, warmup,
                                                       slice_s, bare_processes))
                    around = (bare_runs[-2] + bare_runs[-1]) / 2
                    if around:
                        round_ratios.append(round(part.events / part.seconds / around, 3))
                batched.requests += part.requests
                batched.events += part.events
                batched.seconds += part.seconds
                batched.latencies_ms.extend(part.latencies_ms)
                batched.client_cpu_seconds += part.client_cpu_seconds
                for status, count in part.failures.items():
                    batched.failures[status] = batched.failures.get(status, 0) + count
            single = run_load(url, token, 1, single_connections, warmup, seconds, clients)
            b, s = batched.summary(), single.summary()
            # Each slice's bare runs weigh as much as the slice: the runs between two slices
            # count twice, the first and the last once.
            weights = [1] + [2] * (len(bare_runs) - 2) + [1] if len(bare_runs) > 1 else [1]
            bare = (sum(w * r for w, r in zip(weights, bare_runs, strict=True)) / sum(weights)
                    if bare_runs else None)
            result.update(
                {
                    "batched_events_per_s": b["events_per_s"],
                    "bare_producer_events_per_s": round(bare, 1) if bare else None,
                    "bare_producer_runs_events_per_s": [round(r, 1) for r in bare_runs],
                    "bare_producer_processes": bare_processes,
                    "rounds": rounds,
                    "batched_vs_bare_producer_per_round": round_ratios,
                    # Robust to a spike of others' load during one run.
                    "batched_vs_bare_producer_median_round": round(
                        statistics.median(round_ratios), 3) if round_ratios else None,
                    "batched_vs_bare_producer": round(b["events_per_s"] / bare, 3)
                    if bare else None,
                    # The load client shares the machine with the webhook, not with the bare
                    # producer: its CPU (cores busy on average) is part of the webhook's side.
                    "batched_client_cpu_cores": round(
                        batched.client_cpu_seconds / (rounds * warmup + seconds), 2),
                    "single_requests_per_s": s["requests_per_s"],
                    "p50_ms": s["p50_ms"],
                    "p99_ms": s["p99_ms"],
                    "batched_p50_ms": b["p50_ms"],
                    "batched_p99_ms": b["p99_ms"],
                    "batch_size": batch_size,
                    "batch_connections": batch_connections,
                    "single_connections": single_connections,
                    "client_processes": clients,
                    "seconds_per_phase": seconds,
                    "batched": b,
                    "single": s,
                }
            )
            if topic is not None:
                # Everything sent, warm-up included, is in the topic: at least the 202s counted.
                in_topic = topic_message_count(endpoints.kafka_bootstrap, topic)
                result["events_in_topic"] = in_topic
                result["events_answered_202"] = b["events"] + s["events"]
                # The bare producer's messages are in the same topic, after the webhook's.
                result["topic_check"] = "ok" if in_topic >= b["events"] + s["events"] else "LOST"
        finally:
            if webhook is not None:
                os.killpg(webhook.pid, signal.SIGTERM)
                webhook.wait(60)
            if topic is not None:
                from confluent_kafka.admin import AdminClient

                AdminClient({"bootstrap.servers": endpoints.kafka_bootstrap}).delete_topics([topic])
    if as_json:
        click.echo(json.dumps(result))
    else:
        for key, value in result.items():
            click.echo(f"{key}: {value}")
