"""Prometheus metrics of the price-monitor service, served on GET /metrics of its HTTP port."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# way: http | redis; status: the HTTP status given (also for Redis replies).
REQUESTS = Counter("storefleet_price_monitor_requests_total",
                   "Deals and watch requests answered", ["way", "status"])
REQUEST_SECONDS = Histogram(
    "storefleet_price_monitor_request_seconds", "Time to answer a deals request", ["way"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10))
# Redis requests dropped: unreadable (no id to reply to) or past their deadline when taken.
DROPPED = Counter("storefleet_price_monitor_dropped_requests_total",
                  "Redis requests not answered", ["reason"])
WATCHES = Gauge("storefleet_price_monitor_watches", "Standing watches")
WATCH_DEALS = Counter("storefleet_price_monitor_watch_deals_total",
                      "New deals found by watches (kept and published)")
WATCH_CHECK_SECONDS = Histogram(
    "storefleet_price_monitor_watch_check_seconds", "Time to check one watch",
    buckets=(0.01, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30))
