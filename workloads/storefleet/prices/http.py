"""The price monitor's HTTP API (FastAPI), and the process's lifespan: the PostgreSQL pool, the
Redis request/reply server and the watch keeper all run inside this one ASGI application.

GET    /v1/deals?months=&discount=&store=&limit=&at=   deals, best first (400 bad field, 404 store)
POST   /v1/watches {"months", "discount", "store"?, "owner"?}   201 the watch (with its id)
GET    /v1/watches?owner=          the watches (of one owner)
GET    /v1/watches/{id}            one watch; DELETE removes it (204)
GET    /v1/watches/{id}/deals?after=SEQ   the new deals the watch found, in order
GET    /healthz (process alive)  /readyz (PostgreSQL and Redis answer)  /metrics  /openapi.json
Errors are {"error": "...", "field": "<the field at fault>"}.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import psycopg
import redis.asyncio as aioredis
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from psycopg_pool import PoolTimeout

from storefleet import __version__
from storefleet.prices import metrics
from storefleet.prices.request import (
    DealsRequest,
    NotFound,
    RequestError,
    WatchRequest,
    first_error,
)
from storefleet.prices.rpc import RequestServer
from storefleet.prices.service import PriceMonitor, answer_request, open_pool
from storefleet.prices.settings import MonitorSettings
from storefleet.prices.watches import WatchKeeper

log = logging.getLogger("storefleet.prices.http")

ERROR = {"content": {"application/json": {"example": {"error": "months must be between 1 and "
                                                               "60, got 0", "field": "months"}}}}


def create_app(settings: MonitorSettings) -> FastAPI:
    """The service's ASGI app; its lifespan opens the pool and starts the background tasks."""
    tasks: list[asyncio.Task[None]] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = open_pool(settings)
        await pool.open(wait=False)
        client = aioredis.Redis.from_url(settings.redis_url)
        monitor = PriceMonitor(pool)
        keeper = WatchKeeper(settings, pool, client)
        server = RequestServer(
            client, lambda fields: answer_request(monitor, fields, keeper.check_soon),
            concurrency=settings.pool_size)
        app.state.monitor, app.state.keeper, app.state.redis = monitor, keeper, client
        tasks.extend([asyncio.create_task(keeper.run(), name="watch-keeper"),
                      asyncio.create_task(server.run(), name="redis-requests")])
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await client.aclose()
            await pool.close()

    app = FastAPI(title="StoreFleet price monitor", version=__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None,
                  description="Products whose current price is at least D% below their "
                              "time-weighted average price of the last M months, and standing "
                              "watches that tell of new deals (docs/price-monitor.md).")

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        if errors and errors[0].get("type") == "json_invalid":
            error = RequestError("body", "the body is not valid JSON")
        else:
            error = first_error(errors)
        _count(request, 400)
        return JSONResponse(error.as_json(), status_code=400)

    @app.exception_handler(RequestError)
    async def request_error(request: Request, exc: RequestError) -> JSONResponse:
        _count(request, 400)
        return JSONResponse(exc.as_json(), status_code=400)

    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound) -> JSONResponse:
        _count(request, 404)
        return JSONResponse(exc.as_json(), status_code=404)

    @app.exception_handler(psycopg.Error)
    @app.exception_handler(PoolTimeout)
    async def unavailable(request: Request, exc: Exception) -> JSONResponse:
        _count(request, 503)
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return JSONResponse({"error": f"database unavailable: {message}"}, status_code=503)

    @app.get("/v1/deals", responses={400: ERROR, 404: ERROR},
             summary="Deals: current price at least D% below the M-month average")
    async def deals(query: Annotated[DealsRequest, Query()], request: Request) -> dict[str, Any]:
        began = time.perf_counter()
        monitor: PriceMonitor = request.app.state.monitor
        body = await monitor.deals(query)
        metrics.REQUEST_SECONDS.labels("http").observe(time.perf_counter() - began)
        _count(request, 200)
        return body

    @app.post("/v1/watches", status_code=201, responses={400: ERROR, 404: ERROR},
              summary="Start a standing watch; its new deals go to storefleet:deals:<id>")
    async def create_watch(body: WatchRequest, request: Request) -> dict[str, Any]:
        watch = await request.app.state.monitor.create_watch(body)
        request.app.state.keeper.check_soon(watch["id"])
        _count(request, 201)
        return watch

    @app.get("/v1/watches", summary="The watches, oldest first (of one owner if given)")
    async def list_watches(request: Request,
                           owner: Annotated[str | None, Query(max_length=128)] = None
                           ) -> dict[str, Any]:
        return {"watches": await request.app.state.monitor.watches(owner)}

    @app.get("/v1/watches/{watch_id}", responses={404: ERROR}, summary="One watch")
    async def get_watch(watch_id: str, request: Request) -> dict[str, Any]:
        return await request.app.state.monitor.watch(watch_id)

    @app.delete("/v1/watches/{watch_id}", status_code=204, responses={404: ERROR},
                summary="Stop a watch (its kept deals go with it)")
    async def delete_watch(watch_id: str, request: Request) -> Response:
        await request.app.state.monitor.delete_watch(watch_id)
        return Response(status_code=204)

    @app.get("/v1/watches/{watch_id}/deals", responses={404: ERROR},
             summary="The new deals a watch found, oldest first, after sequence number `after`")
    async def watch_deals(watch_id: str, request: Request,
                          after: Annotated[int, Query(ge=0)] = 0,
                          limit: Annotated[int, Query(ge=1, le=10000)] = 1000
                          ) -> dict[str, Any]:
        return await request.app.state.monitor.watch_deals(watch_id, after, limit)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> JSONResponse:
        # A background loop that ended (it never should) makes the process unhealthy.
        dead = [t.get_name() for t in tasks if t.done()]
        if dead:
            return JSONResponse({"status": "failed", "stopped": dead}, status_code=500)
        return JSONResponse({"status": "ok"})

    @app.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> JSONResponse:
        problems = []
        try:
            await request.app.state.monitor.ready()
        except Exception as exc:
            text = str(exc).strip()
            problems.append(f"postgresql: {text.splitlines()[0] if text else type(exc).__name__}")
        try:
            await asyncio.wait_for(request.app.state.redis.ping(), 3.0)
        except Exception as exc:
            problems.append(f"redis: {exc}")
        if problems:
            return JSONResponse({"status": "unavailable", "problems": problems},
                                status_code=503)
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app


def _count(request: Request, status: int) -> None:
    if request.url.path.startswith("/v1/"):
        metrics.REQUESTS.labels("http", str(status)).inc()
