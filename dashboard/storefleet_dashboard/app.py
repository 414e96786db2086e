"""The dashboard page: layout and the per-page refresh from the server-wide caches.

`build_page` is called once per browser session. Each page polls the shared `InsightCache`
and `FleetPoller` snapshot on a periodic callback and updates only its widgets, so updates
arrive over the page's websocket without reloads. What a value looks like is decided in
formatting.py; this module only places things.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import panel as pn
from bokeh.models import ColumnDataSource, DatetimeTickFormatter, NumeralTickFormatter, Range1d
from bokeh.plotting import figure
from panel.theme import Fast

from storefleet.insights.contract import ALL, METRICS
from storefleet.prices.monitor import MAX_MONTHS, MIN_MONTHS, check_discount
from storefleet_dashboard import formatting as fmt
from storefleet_dashboard.deals import (
    DealsPoller,
    DealsQuery,
    DealsReply,
    WatchBoard,
    WatchesReply,
)
from storefleet_dashboard.fleetdb import FleetPoller, FleetSnapshot
from storefleet_dashboard.state import InsightCache, RedisFeed

ACCENT = "#2e7d32"
# Fast's own font comes from Google Fonts: a browser with no internet would wait on it.
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"


# The Fast design without that stylesheet, so every asset is served by this process. Panel
# finds a design's bundled files under its class name, hence the subclass keeps the name.
OfflineFast = type("Fast", (Fast,), {
    "_resources": {k: v for k, v in Fast._resources.items() if k != "font"},
    "__module__": __name__,
})

CSS = """
.sf-table { border-collapse: collapse; width: 100%; font-size: 14px; }
.sf-table th { text-align: left; color: #555; font-weight: 600;
               border-bottom: 1px solid #ccc; padding: 4px 8px; }
.sf-table td { border-bottom: 1px solid #eee; padding: 4px 8px; }
.sf-empty { color: #888; font-style: italic; margin: 4px 0; }
.sf-window { color: #777; font-size: 12px; margin: 0; }
"""

CHARTS = {
    "product_views": ("Product views per minute", "#1565c0"),
    "units_purchased": ("Units purchased per minute", "#ef6c00"),
    "revenue": ("Revenue per minute", ACCENT),
}


@dataclass
class Sources:
    """Where a page reads from: both are shared by every session of the server."""

    cache: InsightCache
    fleet: FleetPoller | None
    refresh_seconds: float = 1.0
    feed: RedisFeed | None = None
    deals: DealsPoller | None = None
    watches: WatchBoard | None = None


def _number(name: str, fmt_text: str = "{value:,.0f}") -> pn.indicators.Number:
    return pn.indicators.Number(name=name, value=None, format=fmt_text, nan_format=fmt.DASH,
                                font_size="30pt", title_size="11pt", default_color="#222",
                                sizing_mode="stretch_width")


def _chart(title: str, color: str) -> tuple[Any, ColumnDataSource]:
    source = ColumnDataSource(data={"minute": [], "value": []})
    plot = figure(title=title, x_axis_type="datetime", height=210, sizing_mode="stretch_width",
                  toolbar_location=None, tools="")
    plot.line("minute", "value", source=source, line_width=2, color=color)
    plot.scatter("minute", "value", source=source, size=5, color=color)
    # Minutes at every zoom level; `chart_span` keeps the axis at least ten minutes wide.
    plot.xaxis.formatter = DatetimeTickFormatter(
        microseconds="%H:%M", milliseconds="%H:%M", seconds="%H:%M", minsec="%H:%M",
        minutes="%H:%M", hourmin="%H:%M", hours="%H:%M", days="%d %b")
    plot.x_range = Range1d()
    plot.yaxis.formatter = NumeralTickFormatter(format="0,0")
    plot.y_range.start = 0
    plot.title.text_font_size = "12pt"
    return plot, source


def _html() -> pn.pane.HTML:
    # Panes render in their own shadow root: page-wide CSS does not reach them.
    return pn.pane.HTML("", sizing_mode="stretch_width", stylesheets=[CSS], margin=(0, 5))


def _card(title: str, *objects: Any, **options: Any) -> pn.Card:
    options = {"sizing_mode": "stretch_width", **options}
    return pn.Card(*objects, title=title, collapsible=False, margin=(5, 5), **options)


class Page:
    """The widgets of one open page and how they follow the caches."""

    def __init__(self, sources: Sources) -> None:
        self.sources = sources
        self.seen: tuple[Any, ...] | None = None
        self.select = pn.widgets.Select(name="Store", options=sources.cache.scopes(), value=ALL,
                                        sizing_mode="stretch_width")
        self.updated = pn.pane.Markdown("", sizing_mode="stretch_width")
        self.fleet_status = _html()

        self.views = _number("Product views / min")
        self.units = _number("Units purchased / min")
        self.revenue = _number("Revenue / min", "{value:,.2f}")
        self.coupons_issued = _number("Issued")
        self.coupons_redeemed = _number("Redeemed")
        # metric whose window a card shows -> the pane showing it
        self.windows: dict[str, pn.pane.HTML] = {
            m: _html() for m in ("product_views", "top_purchased", "top_viewed",
                                 "unique_viewers", "views_before_purchase", "oversold",
                                 "errors")}

        self.charts = {m: _chart(*spec) for m, spec in CHARTS.items()}

        self.top_purchased = _html()
        self.top_viewed = _html()
        self.unique_viewers = _html()

        self.vbp_median = _number("Median views", "{value:,.1f}")
        self.vbp_mean = _number("Mean views", "{value:,.2f}")
        self.vbp_purchases = _number("Purchases")
        self.oversold_units = _number("Units beyond stock")
        self.oversold_products = _number("Products affected")
        self.errors_total = _number("Errors / min")
        self.errors_table = _html()

        # Price deals: asked of the price-monitor service through the server's DealsPoller.
        self.deal_months = pn.widgets.IntInput(name="Period (months)", value=3, start=MIN_MONTHS,
                                               end=MAX_MONTHS, step=1, width=140)
        # The monitor wants 0 < D < 100.
        self.deal_discount = pn.widgets.FloatInput(name="Discount at least (%)", value=10.0,
                                                   start=0.01, end=99.99, step=1, width=140)
        self.deals_table = _html()
        self.deals_status = _html()
        self.deals_seen: tuple[Any, ...] | None = None
        # A user's standing watches (by name), kept by the service; new deals arrive live.
        self.watch_owner = pn.widgets.TextInput(name="Your name", placeholder="e.g. ana",
                                                width=160)
        self.watch_button = pn.widgets.Button(name="Watch these deals", button_type="primary",
                                              width=160, align="end")
        self.watches_html = _html()
        self.watches_seen: tuple[Any, ...] | None = None
        self.watch_note = ""

    def layout(self) -> list[Any]:
        return [
            pn.Row(
                _card("Latest minute",
                      pn.Row(self.views, self.units, self.revenue, sizing_mode="stretch_width"),
                      self.windows["product_views"]),
                _card("Loyalty coupons, all time",
                      pn.Row(self.coupons_issued, self.coupons_redeemed), width=380,
                      sizing_mode=None),
                sizing_mode="stretch_width",
            ),
            pn.Row(*(pn.pane.Bokeh(plot, sizing_mode="stretch_width")
                     for plot, _ in self.charts.values()), sizing_mode="stretch_width"),
            pn.Row(
                _card("Most purchased, last hour", self.top_purchased,
                      self.windows["top_purchased"]),
                _card("Most viewed, last hour", self.top_viewed, self.windows["top_viewed"]),
                _card("Unique viewers per product, this minute", self.unique_viewers,
                      self.windows["unique_viewers"]),
                sizing_mode="stretch_width",
            ),
            pn.Row(
                _card("Views before purchase, last hour",
                      pn.Row(self.vbp_median, self.vbp_mean, self.vbp_purchases),
                      self.windows["views_before_purchase"]),
                _card("Sold without stock, this minute",
                      pn.Row(self.oversold_units, self.oversold_products),
                      self.windows["oversold"]),
                _card("DataCat errors per component, this minute",
                      self.errors_total, self.errors_table, self.windows["errors"]),
                sizing_mode="stretch_width",
            ),
            pn.Row(
                _card("Price deals",
                      pn.Row(self.deal_months, self.deal_discount), self.deals_table,
                      self.deals_status),
                _card("Your price watches",
                      pn.Row(self.watch_owner, self.watch_button), self.watches_html),
                sizing_mode="stretch_width",
            ),
        ]

    def sidebar(self) -> list[Any]:
        return [
            self.select,
            self.updated,
            pn.pane.Markdown("### Fleet"),
            self.fleet_status,
        ]

    def refresh(self) -> None:
        """Called every refresh period: update widgets only if something changed."""
        cache = self.sources.cache
        snapshot = self.sources.fleet.snapshot if self.sources.fleet else None
        scopes = cache.scopes()
        if list(self.select.options) != scopes:
            self.select.options = scopes
        scope = self.select.value or ALL
        view = cache.view(scope)
        now = datetime.now(UTC)
        status = (f"**Last update** {fmt.age_label(fmt.last_update(view.latest), now)}"
                  f"  \n{len(view.latest)} of {len(METRICS)} insights for **{scope}**")
        feed = self.sources.feed
        if feed is not None and not feed.connected.is_set():
            status += "  \n**Redis unreachable**, retrying; figures may be stale"
        if status != self.updated.object:
            self.updated.object = status
        self._show_deals(scope)
        self._show_watches()
        marker = (scope, cache.version, id(snapshot))
        if marker == self.seen:
            return
        self.seen = marker
        self._show_insights(view.latest)
        for metric, (plot, source) in self.charts.items():
            points = view.series.get(metric, [])
            minutes = [fmt.parse_time(start) for start, _ in points]
            source.data = {"minute": minutes, "value": [value for _, value in points]}
            start, end = fmt.chart_span(minutes or [now])
            if (plot.x_range.start, plot.x_range.end) != (start, end):
                plot.x_range.update(start=start, end=end)
        self._show_fleet(scope, snapshot)

    def _show_insights(self, latest: dict[str, dict[str, Any]]) -> None:
        def value(metric: str) -> Any:
            return latest.get(metric, {}).get("value")

        self.views.value = fmt.number(value("product_views"))
        self.units.value = fmt.number(value("units_purchased"))
        self.revenue.value = fmt.number(value("revenue"))
        minute = [latest[m] for m in CHARTS if m in latest]
        for metric, pane in self.windows.items():
            payload = latest.get(metric)
            if metric == "product_views" and minute:
                # The "Latest minute" card shows three metrics: give the newest window.
                payload = max(minute, key=lambda p: p.get("window_start", ""))
            pane.object = _window_line(payload)
        self.top_purchased.object = fmt.html_table(
            ["#", "Store", "Product", "Units"], fmt.ranking_rows(value("top_purchased"), "units"),
            "no purchases in the last hour", numeric=[0, 3])
        self.top_viewed.object = fmt.html_table(
            ["#", "Store", "Product", "Views"], fmt.ranking_rows(value("top_viewed"), "views"),
            "no views in the last hour", numeric=[0, 3])
        self.unique_viewers.object = fmt.html_table(
            ["Store", "Product", "Users"], fmt.unique_viewer_rows(value("unique_viewers")),
            "no views this minute", numeric=[2])
        vbp = value("views_before_purchase")
        self.vbp_median.value = fmt.field(vbp, "median")
        self.vbp_mean.value = fmt.field(vbp, "mean")
        self.vbp_purchases.value = fmt.field(vbp, "purchases")
        oversold = value("oversold")
        self.oversold_units.value = fmt.field(oversold, "oversold_units")
        self.oversold_products.value = fmt.field(oversold, "products_affected")
        self.oversold_units.default_color = (
            "#c62828" if (fmt.field(oversold, "oversold_units") or 0) > 0 else "#222")
        errors = value("errors")
        self.errors_total.value = fmt.error_total(errors)
        self.errors_table.object = fmt.html_table(
            ["Component", "Errors"], fmt.error_rows(errors), "no errors this minute",
            numeric=[1])

    def _show_fleet(self, scope: str, snapshot: FleetSnapshot | None) -> None:
        if snapshot is None:
            self.coupons_issued.value = None
            self.coupons_redeemed.value = None
            self.fleet_status.object = ('<p class="sf-empty">PostgreSQL not configured '
                                        "(STOREFLEET_PG_DSN): no coupons or store list</p>")
            return
        counts = snapshot.coupons_for(scope)
        self.coupons_issued.value = counts.issued if snapshot.read_at else None
        self.coupons_redeemed.value = counts.redeemed if snapshot.read_at else None
        rows = [[s.store_id, s.fleet, fmt.format_count(s.cycles_done)] for s in snapshot.stores]
        table = fmt.html_table(["Store", "Fleet", "Cycles"], rows, "no stores running yet",
                               numeric=[2])
        if snapshot.error:
            table = f'<p class="sf-empty">PostgreSQL: {html.escape(snapshot.error)}</p>' + table
        self.fleet_status.object = table

    def deals_query(self, scope: str) -> DealsQuery | None:
        """The query the widgets describe, or None while they hold no valid one."""
        months, discount = self.deal_months.value, self.deal_discount.value
        if months is None or discount is None or not MIN_MONTHS <= months <= MAX_MONTHS:
            return None
        try:
            percent = check_discount(discount)
        except ValueError:
            return None
        return DealsQuery(months=int(months), discount=percent,
                          store=None if scope == ALL else scope)

    def _show_deals(self, scope: str) -> None:
        poller = self.sources.deals
        if poller is None:
            marker: tuple[Any, ...] = ("unconfigured",)
        else:
            query = self.deals_query(scope)
            reply = poller.reply(query) if query is not None else None
            marker = (query, id(reply))
        if marker == self.deals_seen:
            return
        self.deals_seen = marker
        if poller is None:
            self.deals_table.object = '<p class="sf-empty">no price monitor configured</p>'
            self.deals_status.object = ""
            return
        self.deals_table.object, self.deals_status.object = _deals_html(query, reply)

    def watch_these_deals(self) -> None:
        """The button: a standing watch of the deals the inputs describe, for the named user."""
        board, owner = self.sources.watches, (self.watch_owner.value or "").strip()
        query = self.deals_query(self.select.value or ALL)
        if board is None:
            self.watch_note = "no price monitor configured"
        elif not owner:
            self.watch_note = "enter your name first: watches are kept per name"
        elif query is None:
            self.watch_note = "choose a valid period and discount first"
        else:
            board.create(owner, query)
            self.watch_note = "asking the price monitor…"
        self.watches_seen = None
        self.refresh()

    def _show_watches(self) -> None:
        board, owner = self.sources.watches, (self.watch_owner.value or "").strip()
        reply = board.watches(owner) if board is not None and owner else None
        if reply is not None and reply.note:
            self.watch_note = reply.note
        marker = (owner, id(reply), self.watch_note)
        if marker == self.watches_seen:
            return
        self.watches_seen = marker
        self.watches_html.object = _watches_html(owner, reply, self.watch_note)


def _deals_html(query: DealsQuery | None, reply: DealsReply | None) -> tuple[str, str]:
    """(table, status line) of the deals card."""
    if query is None:
        return (f'<p class="sf-empty">months must be {MIN_MONTHS}–{MAX_MONTHS} and the '
                "discount more than 0 and less than 100 %</p>", "")
    if reply is None:
        return '<p class="sf-empty">asking the price monitor…</p>', ""
    table = fmt.html_table(
        ["Store", "Product", "Price", "Average", "Discount"], fmt.deal_rows(reply.deals),
        f"no product {query.discount}% or more below its {query.months}-month average",
        numeric=[2, 3, 4])
    if reply.error:
        table = f'<p class="sf-empty">price monitor: {html.escape(reply.error)}</p>' + table
    when = f"{reply.read_at:%H:%M:%S} UTC" if reply.read_at else "never"
    months = f"{query.months} month{'s' if query.months != 1 else ''}"
    status = (f'<p class="sf-window">{len(reply.deals)} shown (top 10) against the '
              f"time-weighted average price of the last {months}, read {when}</p>")
    return table, status


def _watches_html(owner: str, reply: WatchesReply | None, note: str) -> str:
    """The user's watches, each with its newest deals (newest first)."""
    parts = [f'<p class="sf-window">{html.escape(note)}</p>'] if note else []
    if not owner:
        parts.append('<p class="sf-empty">enter your name to see your watches; "Watch these '
                     'deals" keeps the deals card\'s question and tells you of new deals</p>')
        return "".join(parts)
    if reply is None:
        return "".join([*parts, '<p class="sf-empty">asking the price monitor…</p>'])
    if reply.error:
        parts.append(f'<p class="sf-empty">price monitor: {html.escape(reply.error)}</p>')
    if not reply.watches:
        parts.append(f'<p class="sf-empty">{html.escape(owner)} has no watches yet</p>')
    for view in reply.watches:
        watch = view.watch
        where = f"store {watch['store']}" if watch.get("store") else "all stores"
        months = f"{watch['months']} month{'s' if watch['months'] != 1 else ''}"
        parts.append(f'<p class="sf-window"><b>{fmt.format_decimal(watch["discount"], 1)} % '
                     f"below the {months} average, {html.escape(where)}</b></p>")
        rows = [[d["store_id"], d["name"], fmt.format_money(d["current_price"]),
                 fmt.format_money(d["average_price"]),
                 f"{fmt.format_decimal(d['discount_percent'], 1)} %",
                 _clock(d["detected_at"])] for d in view.deals]
        parts.append(fmt.html_table(["Store", "Product", "Price", "Average", "Discount", "Found"],
                                    rows, "no new deal yet", numeric=[2, 3, 4]))
    return "".join(parts)


def _clock(text: Any) -> str:
    moment = fmt.parse_time(text)
    return f"{moment:%H:%M:%S} UTC" if moment else fmt.DASH


def _window_line(payload: dict[str, Any] | None) -> str:
    window = fmt.window_label(payload)
    return f'<p class="sf-window">window {window}</p>' if window else ""


def build_page(sources: Sources) -> pn.template.FastListTemplate:
    """One session's page; registered with `pn.serve` as a factory."""
    page = Page(sources)
    if pn.state.location is not None:
        # ?scope=demo-0003 opens a store directly and the address follows the selector.
        pn.state.location.sync(page.select, {"value": "scope"})
        pn.state.location.sync(page.watch_owner, {"value": "owner"})
    page.refresh()
    template = pn.template.FastListTemplate(
        title="StoreFleet insights",
        sidebar=page.sidebar(),
        main=page.layout(),
        accent=ACCENT,
        header_background=ACCENT,
        theme_toggle=False,
        design=OfflineFast,
        font=FONT,
        font_url="",
        main_layout=None,
    )
    page.select.param.watch(lambda _event: page.refresh(), "value")
    page.deal_months.param.watch(lambda _event: page.refresh(), "value")
    page.deal_discount.param.watch(lambda _event: page.refresh(), "value")
    page.watch_owner.param.watch(lambda _event: page.refresh(), "value")
    page.watch_button.on_click(lambda _event: page.watch_these_deals())
    pn.state.add_periodic_callback(page.refresh, period=int(sources.refresh_seconds * 1000))
    return template
