import pytest

from storefleet.endpoints import SettingError
from storefleet_dashboard.command import websocket_origins
from storefleet_dashboard.fleetdb import CouponCounts, FleetSnapshot
from storefleet_dashboard.settings import from_env


def test_redis_required_pg_optional() -> None:
    settings = from_env({"STOREFLEET_REDIS_URL": "redis://h:1/0"})
    assert settings.redis_url == "redis://h:1/0"
    assert settings.pg_dsn is None
    assert settings.refresh_seconds == 1.0
    with pytest.raises(SettingError, match="STOREFLEET_REDIS_URL"):
        from_env({"STOREFLEET_PG_DSN": "postgresql://x"})


def test_intervals_validated_naming_the_variable() -> None:
    env = {"STOREFLEET_REDIS_URL": "redis://h:1/0", "STOREFLEET_PG_DSN": " postgresql://x ",
           "STOREFLEET_DASHBOARD_DB_POLL_SECONDS": "0.5"}
    settings = from_env(env)
    assert settings.pg_dsn == "postgresql://x"
    assert settings.db_poll_seconds == 0.5
    for bad in ("0", "-1", "soon"):
        with pytest.raises(SettingError, match="STOREFLEET_DASHBOARD_REFRESH_SECONDS"):
            from_env({**env, "STOREFLEET_DASHBOARD_REFRESH_SECONDS": bad})


def test_websocket_origins() -> None:
    assert websocket_origins("127.0.0.1", 15006, ()) == ["localhost:15006", "127.0.0.1:15006"]
    assert websocket_origins("0.0.0.0", 15006, ()) == ["*"]
    assert websocket_origins("dash.internal", 80, ()) == ["dash.internal:80"]
    assert websocket_origins("0.0.0.0", 15006, ("shop.example:443",)) == ["shop.example:443"]


def test_coupon_counts_per_store_and_for_all() -> None:
    snapshot = FleetSnapshot(coupons={"demo-0001": CouponCounts(3, 1),
                                      "demo-0002": CouponCounts(1, 0)})
    assert snapshot.coupons_for("ALL") == CouponCounts(4, 1)
    assert snapshot.coupons_for("demo-0002") == CouponCounts(1, 0)
    assert snapshot.coupons_for("demo-0404") == CouponCounts(0, 0)
