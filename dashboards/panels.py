"""The Panel dashboard one browser tab gets: vitals, machines, orders and operations tabs.

A session reads `live_state` from a periodic callback (so Bokeh's document lock is held) and streams
only the rows it has not shown yet, with rollover: a tab's memory and traffic stay bounded. Tabs are
built when first opened and only the visible one is refreshed, so opening a session stays cheap.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

import panel as pn
from bokeh.layouts import column, row
from bokeh.models.annotations import Span
from bokeh.models.layouts import TabPanel, Tabs
from bokeh.models.ranges import FactorRange, Range1d
from bokeh.models.sources import ColumnDataSource
from bokeh.models.widgets.inputs import Select
from bokeh.models.widgets.markups import Div
from bokeh.models.widgets.tables import DataTable, HTMLTemplateFormatter, NumberFormatter, TableColumn
from bokeh.plotting import figure

from dashboards.live_state import LiveState, Series, columns
from dashboards.operations import duplicates_dropped, model_versions, table_sizes
from streamapp import metrics
from streamapp.app import app
from streamapp.settings import VitalThresholds, get_settings

log = logging.getLogger(__name__)

VITAL_COLUMNS = ("time", "temp_corp", "freq_card", "spo2_pct", "freq_resp")
VITAL_TITLES = {
    "temp_corp": "Temperature (°C)",
    "freq_card": "Heart rate (bpm)",
    "spo2_pct": "SpO2 (%)",
    "freq_resp": "Respiratory rate (/min)",
}
ALERT_COLUMNS = ("timestamp", "patient_id", "alert_type", "severity", "value", "threshold", "color")
ANOMALY_COLUMNS = ("time", "final_score", "threshold", "criticality", "color")
RUL_COLUMNS = ("time", "rul", "lower", "upper")
FLEET_COLUMNS = ("asset_id", "rul", "lower", "upper", "final_score", "criticality", "color")
OPS_COLUMNS = ("time", "consumed_eps", "published_eps", "iot_eps", "lag")
ALERTS_SHOWN = 50
TAB_NAMES = ("vitals", "machines", "orders", "operations")
COLORED_CELL = '<span style="color:<%= color %>;font-weight:bold"><%= value %></span>'
DANGER, WARNING = "#c0392b", "#e67e22"


def vital_threshold_lines(vitals: VitalThresholds) -> dict[str, list[tuple[float, str]]]:
    """The seed's dashed threshold lines per vital, from the settings (never literals)."""
    return {
        "temp_corp": [(vitals.temperature_critical, DANGER)],
        "freq_card": [(vitals.heart_rate_min, DANGER), (vitals.heart_rate_max, DANGER)],
        "spo2_pct": [(vitals.spo2_critical, DANGER), (vitals.combo_spo2, WARNING)],
        "freq_resp": [],
    }


def time_figure(title: str, height: int = 230) -> Any:
    fig = figure(
        title=title, x_axis_type="datetime", height=height, sizing_mode="stretch_width",
        tools="pan,xwheel_zoom,reset", toolbar_location="right",
    )
    fig.toolbar.logo = None
    return fig


def table(names: Sequence[str], formatters: dict[str, Any] | None = None, height: int = 220) -> DataTable:
    """A snapshot table over its own source; the `color` column styles cells and is not shown."""
    formatters = formatters or {}
    shown = []
    for name in names:
        if name == "color":
            continue
        extra = {"formatter": formatters[name]} if name in formatters else {}
        shown.append(TableColumn(field=name, title=name.replace("_", " "), **extra))
    return DataTable(source=ColumnDataSource({name: [] for name in names}), columns=shown, height=height,
                     sizing_mode="stretch_width", index_position=None)


def set_rows(data_table: DataTable, rows: list[dict[str, Any]], names: Sequence[str]) -> None:
    """Replace a small snapshot table's rows, only when they changed (tables are not histories)."""
    set_rows_source(cast(ColumnDataSource, data_table.source), rows, names)


class SeriesFeed:
    """Streams one `Series` into one ColumnDataSource: only new rows, dropping the oldest past `rollover`."""

    def __init__(self, names: Sequence[str], rollover: int) -> None:
        self.names = names
        self.rollover = rollover
        self.source = ColumnDataSource({name: [] for name in names})
        self.key: str | None = None
        self.cursor = 0

    def follow(self, key: str | None, series: Series | None) -> None:
        if key != self.key:
            self.key, self.cursor = key, 0
            self.source.data = {name: [] for name in self.names}
        if series is None:
            return
        rows, self.cursor = series.since(self.cursor)
        if rows:
            self.source.stream(columns(rows[-self.rollover:], self.names), rollover=self.rollover)


class KeyPicker:
    """A selector over the keys (patients, assets) this worker has seen; keeps the user's choice."""

    def __init__(self, name: str) -> None:
        self.widget = Select(title=name, options=[], value="", width=320)

    def refresh(self, keys: list[str]) -> str | None:
        if keys != self.widget.options:
            self.widget.options = list[Any](keys)
        if self.widget.value not in keys:
            self.widget.value = keys[0] if keys else ""
        return self.widget.value or None


class VitalsTab:
    def __init__(self, state: LiveState, rollover: int) -> None:
        self.state = state
        self.patient = KeyPicker("Patient (pseudonym)")
        self.feed = SeriesFeed(VITAL_COLUMNS, rollover)
        thresholds = vital_threshold_lines(get_settings().vitals)
        # invisible points at the thresholds, spanning the shown times, keep the dashed lines in view
        self.levels = {vital: [level for level, _ in lines] for vital, lines in thresholds.items() if lines}
        self.bounds = ColumnDataSource({"time": [], **{vital: [] for vital in self.levels}})
        plots = []
        for vital, title in VITAL_TITLES.items():
            fig = time_figure(title)
            fig.line("time", vital, source=self.feed.source, line_width=2, name=f"vitals-{vital}")
            for level, color in thresholds[vital]:
                fig.add_layout(Span(location=level, dimension="width", line_color=color, line_dash="dashed",
                                    line_width=2))
            if vital in self.levels:
                fig.scatter("time", vital, source=self.bounds, alpha=0)
            plots.append(fig)
        formatters = {"severity": HTMLTemplateFormatter(template=COLORED_CELL),
                      "alert_type": HTMLTemplateFormatter(template=COLORED_CELL),
                      "value": NumberFormatter(format="0.0")}
        self.alerts = table(ALERT_COLUMNS, formatters)
        self.alerts_seq = -1
        self.view = column(
            self.patient.widget, row(plots[0], plots[1], sizing_mode="stretch_width"),
            row(plots[2], plots[3], sizing_mode="stretch_width"),
            heading("Recent alerts (newest first)"), self.alerts, sizing_mode="stretch_width",
        )

    def update(self) -> None:
        patient = self.patient.refresh(self.state.patients())
        self.feed.follow(patient, self.state.vitals.get(patient) if patient else None)
        shown = self.feed.source.data["time"]
        if len(shown):
            span = [shown[0], shown[-1]]
            if list(self.bounds.data["time"]) != span:
                self.bounds.data = {"time": span, **{v: [min(ls), max(ls)] for v, ls in self.levels.items()}}
        if self.state.alerts.last_seq != self.alerts_seq:
            self.alerts_seq = self.state.alerts.last_seq
            recent = [row for _, row in list(self.state.alerts.rows)[-ALERTS_SHOWN:]][::-1]
            set_rows(self.alerts, recent, ALERT_COLUMNS)


class MachinesTab:
    def __init__(self, state: LiveState, rollover: int) -> None:
        self.state = state
        self.asset = KeyPicker("Asset")
        self.anomaly = SeriesFeed(ANOMALY_COLUMNS, rollover)
        self.rul = SeriesFeed(RUL_COLUMNS, rollover)
        score = time_figure("Anomaly final score, threshold (dashed) and criticality")
        score.line("time", "final_score", source=self.anomaly.source, line_width=2, name="anomaly-score")
        score.scatter("time", "final_score", source=self.anomaly.source, color="color", size=7,
                      legend_field="criticality")
        score.step("time", "threshold", source=self.anomaly.source, line_dash="dashed", line_color=DANGER,
                   mode="after")
        score.legend.location = "top_left"
        forecast = time_figure("Remaining useful life (cycles) with its confidence band")
        forecast.varea("time", "lower", "upper", source=self.rul.source, fill_alpha=0.25, legend_label="95 % band")
        forecast.line("time", "rul", source=self.rul.source, line_width=2, legend_label="RUL", name="rul-line")
        forecast.legend.location = "top_left"
        number = NumberFormatter(format="0.00")
        self.fleet = table(FLEET_COLUMNS, {"rul": NumberFormatter(format="0.0"), "lower": number, "upper": number,
                                           "final_score": NumberFormatter(format="0.000"),
                                           "criticality": HTMLTemplateFormatter(template=COLORED_CELL)})
        self.fleet_seq = -1
        self.view = column(
            self.asset.widget, row(score, forecast, sizing_mode="stretch_width"),
            heading("Fleet, lowest RUL first"), self.fleet, sizing_mode="stretch_width",
        )

    def update(self) -> None:
        asset = self.asset.refresh(self.state.assets())
        self.anomaly.follow(asset, self.state.anomalies.get(asset) if asset else None)
        self.rul.follow(asset, self.state.rul.get(asset) if asset else None)
        newest = max([s.last_seq for s in self.state.rul.values()] + [s.last_seq for s in self.state.anomalies.values()]
                     + [0])
        if newest != self.fleet_seq:
            self.fleet_seq = newest
            set_rows(self.fleet, self.state.fleet(), FLEET_COLUMNS)


class OrdersTab:
    def __init__(self, state: LiveState, rollover: int) -> None:
        self.state = state
        self.minutes = ColumnDataSource({"minute": [], "events": []})
        per_minute = time_figure("Order events per minute")
        per_minute.vbar(x="minute", top="events", width=50_000, source=self.minutes, name="orders-per-minute")
        self.by_category = ColumnDataSource({"category": [], "mean_proba": [], "predictions": []})
        self.category_range = FactorRange()
        self.categories = figure(title="Mean return probability by category", y_range=self.category_range,
                                 x_range=Range1d(start=0, end=1), height=260, sizing_mode="stretch_width", tools="",
                                 toolbar_location=None)
        self.categories.hbar(y="category", right="mean_proba", height=0.7, source=self.by_category,
                             name="return-proba-by-category")
        self.figures = Div(sizing_mode="stretch_width")
        self.view = column(self.figures, row(per_minute, self.categories, sizing_mode="stretch_width"),
                           sizing_mode="stretch_width")

    def update(self) -> None:
        stream_minutes(self.minutes, self.state.order_minutes.rows())
        rows = self.state.return_proba_rows()
        names = [row["category"] for row in rows]
        if list(self.category_range.factors) != names:
            self.category_range.factors = names
        set_rows_source(self.by_category, rows, ("category", "mean_proba", "predictions"))
        counted = duplicates_dropped()
        duplicates = (f"{counted} (dropped by the returns pipeline)" if counted is not None
                      else f"{self.state.duplicate_events} (repeated event ids seen here)")
        self.figures.text = (
            f"<b>Order events</b> {self.state.orders_seen} · <b>duplicates</b> {duplicates} · "
            f"<b>return predictions</b> {self.state.predictions_seen}"
        )


def set_rows_source(source: ColumnDataSource, rows: list[dict[str, Any]], names: Sequence[str]) -> None:
    new = columns(rows, names)
    if source.data != new:
        source.data = new


def stream_minutes(source: ColumnDataSource, rows: list[dict[str, float]]) -> None:
    """Per-minute counts: patch the last shown minute's bar, stream bars for new minutes."""
    if not rows:
        return
    shown = list(source.data["minute"])
    last = shown[-1] if shown else None
    current = next((row for row in reversed(rows) if row["minute"] == last), None)
    if current is not None and source.data["events"][-1] != current["events"]:
        source.patch({"events": [(len(shown) - 1, current["events"])]})
    newer = [row for row in rows if last is None or row["minute"] > last]
    if newer:
        source.stream(columns(newer, ("minute", "events")), rollover=len(rows))


class OperationsTab:
    def __init__(self, state: LiveState, rollover: int) -> None:
        self.state = state
        self.feed = SeriesFeed(OPS_COLUMNS, rollover)
        throughput = time_figure("Throughput (messages / s)")
        throughput.line("time", "consumed_eps", source=self.feed.source, legend_label="consumed", line_width=2,
                        name="ops-consumed")
        throughput.line("time", "published_eps", source=self.feed.source, legend_label="published",
                        line_color=WARNING, line_width=2)
        throughput.line("time", "iot_eps", source=self.feed.source, legend_label="IoT processed",
                        line_color="#27ae60", line_width=2)
        throughput.legend.location = "top_left"
        lag = time_figure("Consumer lag (messages, this worker's partitions)")
        lag.line("time", "lag", source=self.feed.source, line_width=2)
        self.dead_letters = table(("reason", "published_here", "seen_on_topic"), height=160)
        self.models = table(("model", "registry", "seen_in_output"), height=160)
        self.health = table(("component", "status", "detail", "color"),
                            {"status": HTMLTemplateFormatter(template=COLORED_CELL)}, height=200)
        self.topics = table(("topic", "records"), height=160)
        self.tables = table(("table", "keys"), height=160)
        self.view = column(
            row(throughput, lag, sizing_mode="stretch_width"),
            row(column(heading("Dead letters by reason"), self.dead_letters, sizing_mode="stretch_width"),
                column(heading("Model versions in use"), self.models, sizing_mode="stretch_width"),
                sizing_mode="stretch_width"),
            row(column(heading("Broker and database health"), self.health, sizing_mode="stretch_width"),
                column(heading("Records shown here, by topic"), self.topics, sizing_mode="stretch_width"),
                sizing_mode="stretch_width"),
            row(column(heading("Faust tables (keys held by this worker)"), self.tables, sizing_mode="stretch_width"),
                sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )

    def update(self) -> None:
        self.feed.follow("operations", self.state.operations)
        published = metrics.dead_letters_by_reason()
        seen = self.state.dead_letters_by_reason
        set_rows(self.dead_letters, [
            {"reason": reason, "published_here": published.get(reason, 0), "seen_on_topic": seen.get(reason, 0)}
            for reason in sorted(set(published) | set(seen))
        ], ("reason", "published_here", "seen_on_topic"))
        registry = model_versions()
        outputs = self.state.model_versions_seen
        set_rows(self.models, [
            {"model": model, "registry": registry.get(model, ""), "seen_in_output": outputs.get(model, "")}
            for model in sorted(set(registry) | set(outputs))
        ], ("model", "registry", "seen_in_output"))
        set_rows(self.health, health_rows(self.state.health), ("component", "status", "detail", "color"))
        set_rows(self.tables, [{"table": name, "keys": size} for name, size in sorted(table_sizes(app).items())],
                 ("table", "keys"))
        set_rows(self.topics, [{"topic": topic, "records": count}
                               for topic, count in sorted(self.state.records_by_topic.items())], ("topic", "records"))


def health_rows(checks: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for component, check in sorted(checks.items()):
        ok = bool(check.get("ok"))
        detail = ", ".join(f"{key}={value}" for key, value in check.items() if key not in ("ok", "url"))
        rows.append({"component": component, "status": "ok" if ok else "DOWN", "detail": detail[:200],
                     "color": "#27ae60" if ok else DANGER})
    return rows


TAB_BUILDERS: dict[str, Callable[[LiveState, int], Any]] = {
    "vitals": VitalsTab, "machines": MachinesTab, "orders": OrdersTab, "operations": OperationsTab,
}


class DashboardSession:
    """One browser tab: builds tabs on first view and refreshes the visible one every `refresh_ms`.

    Plain Bokeh models (one Panel pane around them): they cost far less to build than Panel widgets,
    and sessions are built on the worker's event loop."""

    def __init__(self, state: LiveState, *, first_tab: str = "vitals") -> None:
        settings = get_settings()
        self.state = state
        self.rollover = settings.dashboard_history_points
        self.built: dict[str, Any] = {}
        self.status = Div(sizing_mode="stretch_width")
        active = TAB_NAMES.index(first_tab) if first_tab in TAB_NAMES else 0
        # a tab's content goes into a column (Bokeh re-renders changed children, not a changed TabPanel.child)
        self.slots = [column(sizing_mode="stretch_width") for _ in TAB_NAMES]
        self.tabs = Tabs(tabs=[TabPanel(child=slot, title=name.capitalize()) for name, slot in zip(
            TAB_NAMES, self.slots, strict=True)], active=active, sizing_mode="stretch_width", name="dashboard-tabs")
        self.tabs.on_change("active", lambda attr, old, new: self.update())
        self.view = column(Div(text="<h2>streamapp live</h2>"), self.status, self.tabs, sizing_mode="stretch_width")
        self.update()
        pn.state.add_periodic_callback(self.update, period=min(settings.dashboard_refresh_ms, 2000))

    def visible_tab(self) -> Any:
        name = TAB_NAMES[self.tabs.active]
        if name not in self.built:
            self.built[name] = TAB_BUILDERS[name](self.state, self.rollover)
            self.slots[self.tabs.active].children = [self.built[name].view]
        return self.built[name]

    def update(self) -> None:
        try:
            self.visible_tab().update()
            self.status.text = (
                f"This worker's partitions only · updated {time.strftime('%H:%M:%S')} · "
                f"patients {len(self.state.vitals)} · assets {len(self.state.assets())} · "
                f"orders {self.state.orders_seen}"
            )
        except Exception:  # a refresh that fails is logged and retried on the next tick
            log.exception("dashboard refresh failed")


def heading(text: str) -> Div:
    return Div(text=f"<h3>{text}</h3>", sizing_mode="stretch_width")


def build_dashboard() -> Any:
    """The Panel app function: one call per browser session."""
    from dashboards.live_state import live_state

    first = pn.state.session_args.get("tab", [b"vitals"])[0].decode()
    return pn.pane.Bokeh(DashboardSession(live_state, first_tab=first).view, sizing_mode="stretch_width")
