"""`storefleet dashboard [--port P] [--host H]`: the Panel dashboard of the live insights.

Reads: Redis (STOREFLEET_REDIS_URL, required): keys storefleet:insights:<scope>:<metric> at start
and the pub/sub channels storefleet:insights:<scope> after (storefleet.insights.contract);
PostgreSQL (STOREFLEET_PG_DSN, optional): conta_verde.coupons, simulator.stores. Price deals and
watches are asked of the price-monitor service over Redis request/reply (storefleet.prices.rpc).
Writes: nothing; serves the page on http://H:P/ (and /liveness for probes).
Run: `eval $(storefleet services env) && storefleet dashboard --port 15006`, or let
`storefleet up` start it. All JavaScript and CSS are served by this process (no CDN).
"""

from __future__ import annotations

import logging

import click

from storefleet.endpoints import SettingError

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def websocket_origins(host: str, port: int, extra: tuple[str, ...]) -> list[str]:
    """Origins whose pages may open the session websocket.

    Bound to a loopback address, only local pages; bound to all interfaces (a container behind
    a Service or an ingress, whose public name this process cannot know), any origin unless
    --allow-origin names them. The page is read-only, so this exposes nothing writable.
    """
    if extra:
        return list(extra)
    if host in LOCAL_HOSTS:
        return [f"localhost:{port}", f"127.0.0.1:{port}"]
    if host in ("0.0.0.0", "::", ""):
        return ["*"]
    return [f"{host}:{port}"]


@click.command()
@click.option("--port", type=click.IntRange(1, 65535), default=15006, show_default=True,
              envvar="STOREFLEET_DASHBOARD_PORT", help="Port to serve the page on.")
@click.option("--host", default="127.0.0.1", show_default=True,
              envvar="STOREFLEET_DASHBOARD_HOST", help="Address to bind (0.0.0.0: all).")
@click.option("--allow-origin", "origins", multiple=True,
              help="host[:port] a browser reaches the page at (repeatable); default: see docs.")
def dashboard(port: int, host: str, origins: tuple[str, ...]) -> None:
    """Serve the live insights dashboard (Panel) until stopped."""
    from storefleet_dashboard.settings import from_env

    try:
        settings = from_env()
    except SettingError as exc:
        raise click.ClickException(str(exc)) from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    import panel as pn

    from storefleet_dashboard.app import Sources, build_page
    from storefleet_dashboard.deals import DealsPoller, WatchBoard
    from storefleet_dashboard.fleetdb import FleetPoller
    from storefleet_dashboard.state import InsightCache, RedisFeed

    cache = InsightCache()
    feed = RedisFeed(settings.redis_url, cache).start()
    fleet = FleetPoller(settings.pg_dsn, settings.db_poll_seconds).start() \
        if settings.pg_dsn else None
    deals = DealsPoller(settings.redis_url, settings.db_poll_seconds).start()
    watches = WatchBoard(settings.redis_url, settings.db_poll_seconds).start()
    sources = Sources(cache=cache, fleet=fleet, refresh_seconds=settings.refresh_seconds,
                      feed=feed, deals=deals, watches=watches)
    click.echo(f"dashboard on http://{host}:{port}/", err=True)
    try:
        pn.serve(
            {"/": lambda: build_page(sources)},
            port=port,
            address=host,
            allow_websocket_origin=websocket_origins(host, port, origins),
            show=False,
            title="StoreFleet",
            liveness=True,
            threaded=False,
        )
    finally:
        feed.stop()
        if fleet is not None:
            fleet.stop()
        deals.stop()
        watches.stop()
