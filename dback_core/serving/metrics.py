"""Prometheus metrics for one server: what it serves, what flows through it, how plugins fare.

Each server owns its own ``CollectorRegistry``, so several servers in one process
(tests, embedding) never share or clash over counters. Counters that the hot path would
otherwise have to maintain - connections per guild, slow clients dropped, plugin status - are
read from the server's own state when ``/metrics`` is scraped, so serving costs nothing extra.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from dback_core.loading.plugins import PluginSet
from dback_core.plugin.redaction import redact
from dback_core.wire.fanout import Fanout

CONTENT_TYPE = CONTENT_TYPE_LATEST

#: Provider latency buckets: from a cached dict lookup to a slow remote API near the timeout.
_LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True)
class Watched:
    """The live state a scrape reads: the viewers, the guild list's size, what holds
    readiness back, and the plugins."""

    fanout: Fanout
    guild_count: Callable[[], int]
    readiness: Callable[[], Mapping[str, str]]
    plugins: PluginSet


class Metrics:
    """The counters a server updates as it works, and the registry that exposes them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.events_in = Counter(
            "dback_events",
            "Events published into the server, by kind.",
            ["kind"],
            registry=self.registry,
        )
        self.frames_out = Counter(
            "dback_frames_out",
            "Event frames queued for viewers (frames to a slow client dropped later count too).",
            registry=self.registry,
        )
        self.provider_calls = Counter(
            "dback_provider_calls",
            "Plugin hook calls, by plugin and hook.",
            ["plugin", "hook"],
            registry=self.registry,
        )
        self.provider_errors = Counter(
            "dback_provider_errors",
            "Plugin hook calls that raised or timed out, by plugin, hook and reason.",
            ["plugin", "hook", "reason"],
            registry=self.registry,
        )
        self.provider_latency = Histogram(
            "dback_provider_call_seconds",
            "Time plugin hook calls took, by plugin and hook.",
            ["plugin", "hook"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.chat_duplicates = Counter(
            "dback_chat_duplicates",
            "Chat messages not shown again: their source position had been shown already "
            "(a replay, or a bus publisher's handover).",
            registry=self.registry,
        )
        self.chat_lost = Counter(
            "dback_chat_lost",
            "Chat messages a plugin could not deliver, by plugin and reason (older than the "
            "replay window, history trimmed).",
            ["plugin", "reason"],
            registry=self.registry,
        )
        # Label children resolved once: ``labels()`` costs more than the increment itself,
        # and these are counted on every event and every plugin call.
        self._events_by_kind: dict[str, Any] = {}
        self._calls_by_hook: dict[tuple[str, str], tuple[Any, Any]] = {}

    def event_in(self, kind: str) -> None:
        """Count one event of ``kind`` published into the server."""
        child = self._events_by_kind.get(kind)
        if child is None:
            child = self._events_by_kind[kind] = self.events_in.labels(kind)
        child.inc()

    def watch(self, watched: Watched) -> None:
        """Expose the live state of one server (connections, plugins) on each scrape."""
        self.registry.register(_ServerState(watched))

    def observe_call(self, plugin: str, hook: str, seconds: float, error: str | None) -> None:
        """Record one plugin hook call; ``error`` is ``"exception"``, ``"timeout"`` or None."""
        children = self._calls_by_hook.get((plugin, hook))
        if children is None:
            children = self._calls_by_hook[plugin, hook] = (
                self.provider_calls.labels(plugin, hook),
                self.provider_latency.labels(plugin, hook),
            )
        calls, latency = children
        calls.inc()
        latency.observe(seconds)
        if error is not None:
            self.provider_errors.labels(plugin, hook, error).inc()

    def render(self) -> bytes:
        """The text exposition format, as served on ``/metrics``."""
        return generate_latest(self.registry)


class _ServerState(Collector):
    """Gauges computed from the server's state at scrape time."""

    def __init__(self, watched: Watched) -> None:
        self.watched = watched

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        watched = self.watched
        fanout = watched.fanout
        per_guild = GaugeMetricFamily(
            "dback_connections_per_guild",
            "Clients watching each guild, by guild snowflake.",
            labels=["guild"],
        )
        for guild, connections in sorted(fanout.by_guild.items()):
            per_guild.add_metric([guild], len(connections))
        yield per_guild
        yield GaugeMetricFamily(
            "dback_connections", "Open WebSocket connections.", value=len(fanout.viewers)
        )
        yield GaugeMetricFamily(
            "dback_guilds", "Guilds in the server list.", value=watched.guild_count()
        )
        yield CounterMetricFamily(
            "dback_slow_clients_dropped",
            "Clients disconnected because they stopped reading.",
            value=fanout.slow_disconnects,
        )
        yield GaugeMetricFamily(
            "dback_ready",
            "1 while ready: started, and every guild-listing plugin listed and serving.",
            value=int(not watched.readiness()),
        )
        status = GaugeMetricFamily(
            "dback_plugin_status",
            "1 for each plugin's current status as dback plugins shows it (active, standing "
            "aside, standby, disabled, not configured, failed, unavailable).",
            labels=["plugin", "version", "status"],
        )
        plugins = watched.plugins
        for record in plugins.records:
            status.add_metric([record.name, record.version or "", plugins.status_of(record)], 1)
        yield status
        detail = GaugeMetricFamily(
            "dback_plugin_detail",
            "1 for each plugin's current detail text, as dback plugins shows it (a bus "
            "plugin's role, for example).",
            labels=["plugin", "detail"],
        )
        for record in watched.plugins.records:
            text = record.detail
            if text:
                detail.add_metric([record.name, redact(text)], 1)
        yield detail
