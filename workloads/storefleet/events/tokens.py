"""Ingest tokens: one per fleet, derived from one key, so no token list has to be shared.

A fleet token is `sf1.<fleet>.<mac>` where mac = base64url(HMAC-SHA256(key, "fleet:" + fleet)),
unpadded. The webhook holds the key (`STOREFLEET_INGEST_TOKEN_KEY`) and checks a token by
recomputing its mac, so a fleet added later needs no restart; the operator (and
`storefleet up`) hold the same key to hand each fleet its token in a Secret. A fleet token
posts only events of that fleet's stores (`events.bounds.fleet_of_store`); the admin token
(`STOREFLEET_INGEST_TOKEN`) posts for any store.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

PREFIX = "sf1"


def _mac(key: bytes, fleet: str) -> str:
    digest = hmac.new(key, b"fleet:" + fleet.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def fleet_token(key: bytes, fleet: str) -> str:
    """The ingest token of `fleet` under `key` (bytes of the shared secret)."""
    # The mac (base64url) has no '.', so `token_fleet` splits at the last one: fleet names
    # with dots (DNS-1123 allows them) are fine.
    if not fleet or not fleet.isprintable() or " " in fleet:
        raise ValueError(f"not a fleet name: {fleet!r}")
    return f"{PREFIX}.{fleet}.{_mac(key, fleet)}"


def token_fleet(key: bytes, token: str) -> str | None:
    """The fleet a token belongs to when its mac is right under `key`, else None."""
    prefix, _, rest = token.partition(".")
    fleet, _, mac = rest.rpartition(".")
    if prefix != PREFIX or not fleet or not mac:
        return None
    if hmac.compare_digest(mac.encode(), _mac(key, fleet).encode()):
        return fleet
    return None
