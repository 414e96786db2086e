"""`storefleet insights show --store ID|ALL [--json]`: the latest insights of one scope.

Reads: Redis (STOREFLEET_REDIS_URL), keys storefleet:insights:<scope>:<metric> (contract.py).
Writes: stdout, a JSON object {metric: payload} with --json, else one line per metric.
"""

from __future__ import annotations

import json
import os

import click
import redis

from storefleet.endpoints import REDIS_URL, SettingError, require
from storefleet.insights.contract import ALL, METRICS, read_latest


@click.command("show")
@click.option("--store", "scope", default=ALL, show_default=True, help="A store id, or ALL.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def show(scope: str, as_json: bool) -> None:
    """Print the latest value of every insight for a store or for ALL."""
    try:
        url = require(REDIS_URL, dict(os.environ))
    except SettingError as exc:
        raise click.ClickException(str(exc)) from None
    client = redis.Redis.from_url(url)
    try:
        latest = read_latest(client, scope)
    except redis.RedisError as exc:
        raise click.ClickException(f"cannot read Redis: {exc}") from None
    finally:
        client.close()
    if as_json:
        click.echo(json.dumps({"scope": scope, "insights": latest}, indent=2, sort_keys=True))
        return
    if not latest:
        click.echo(f"no insights for {scope} yet (is `storefleet insights run` running?)")
        return
    for metric in METRICS:
        if metric in latest:
            item = latest[metric]
            click.echo(f"{metric:<22} {item['window_start']} .. {item['window_end']}  "
                       f"{json.dumps(item['value'])}")
