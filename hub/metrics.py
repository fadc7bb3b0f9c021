"""Prometheus metrics, one registry per application so tests can run several hubs at once.

Each metric is the attribute of :class:`Metrics` of the same name, ``channelhub_`` before it;
they are made per area (messages, dispatch, console, sampled gauges, bus, cluster), so an area's
families read together."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

PREFIX = "channelhub_"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._messages()
        self._dispatch()
        self._console()
        self._sampled()
        self._bus()
        self._cluster()

    def _counter(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Counter:
        return Counter(PREFIX + name, documentation, labels, registry=self.registry)

    def _gauge(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Gauge:
        return Gauge(PREFIX + name, documentation, labels, registry=self.registry)

    def _histogram(
        self,
        name: str,
        documentation: str,
        labels: Sequence[str] = (),
        *,
        buckets: Sequence[float],
    ) -> Histogram:
        return Histogram(
            PREFIX + name, documentation, labels, buckets=buckets, registry=self.registry
        )

    def _messages(self) -> None:
        """Messages in and out of the channels."""
        self.messages_in = self._counter("messages_in", "Inbound messages stored", ("channel",))
        self.messages_duplicate = self._counter(
            "messages_duplicate", "Redeliveries recognized and not stored again", ("channel",)
        )
        self.messages_out = self._counter(
            "messages_out", "Outbound messages handed to a channel", ("channel", "status")
        )
        self.call_events = self._counter(
            "call_events",
            "Phone call timeline events recorded (ringing, answered, abandoned, ...)",
            ("state",),
        )

    def _dispatch(self) -> None:
        """Queues, offers and service levels (hub.dispatch)."""
        self.queue_depth = self._gauge(
            "queue_depth", "Conversations waiting for an agent", ("queue",)
        )
        self.offer_accept_seconds = self._histogram(
            "offer_accept_seconds",
            "Time from an offer to its acceptance",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60),
        )
        self.queue_wait_seconds = self._histogram(
            "queue_wait_seconds",
            "Time from queueing to acceptance",
            ("queue",),
            buckets=(0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
        )
        self.first_response_seconds = self._histogram(
            "first_response_seconds",
            "Time from queueing to the first agent reply",
            ("queue",),
            buckets=(5, 15, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 24 * 3600),
        )
        self.sla_breaches = self._counter(
            "sla_breaches", "First replies later than the SLA the rules set", ("queue",)
        )
        self.offers = self._counter("offers", "Offer outcomes", ("queue", "outcome"))
        self.requeued = self._counter(
            "requeued", "Conversations sent back to their queue", ("queue", "reason")
        )
        self.abandoned = self._counter(
            "abandoned",
            "Customers who left a live channel while waiting, and did not come back in time",
            ("queue",),
        )

    def _console(self) -> None:
        """Agents' consoles."""
        self.agent_sockets_dropped = self._counter(
            "agent_sockets_dropped",
            "Agent sockets dropped because the console stopped reading (it resyncs on reconnect)",
            ("reason",),
        )
        self.agents_connected = self._gauge(
            "agents_connected", "Agents with at least one console open"
        )

    def _sampled(self) -> None:
        """Sampled from the store and the connectors (hub.gauges): every process of a deployment
        reports the same outbox figures, so alert rules take max()."""
        self.outbox_pending = self._gauge(
            "outbox_pending", "Replies waiting in the outbox to be sent (or retried)"
        )
        self.outbox_oldest_pending_seconds = self._gauge(
            "outbox_oldest_pending_seconds",
            "Age of the oldest reply waiting in the outbox (0 when none waits)",
        )
        self.outbox_dead_letters = self._gauge(
            "outbox_dead_letters",
            "Replies that failed for good (no more retries) and stay in the outbox",
        )
        self.connector_up = self._gauge(
            "connector_up",
            "1 while a channel instance can receive, 0 while its health check reports a problem",
            ("connector", "channel"),
        )

    def _bus(self) -> None:
        """The Redis Streams bus (memory:// counts nothing: it has no acks, reclaims or streams);
        ``group`` is "broadcast" for broadcast subscriptions."""
        self.bus_published = self._counter(
            "bus_published", "Events written to a bus stream", ("topic",)
        )
        self.bus_publish_failed = self._counter(
            "bus_publish_failed",
            "Publishes refused with BusUnavailable (Redis unreachable or not writable)",
            ("topic",),
        )
        self.bus_delivered = self._counter(
            "bus_delivered",
            "Events handed to a subscriber, redeliveries included",
            ("topic", "group"),
        )
        self.bus_acked = self._counter(
            "bus_acked", "Events acknowledged by their handler", ("topic", "group")
        )
        self.bus_reclaimed = self._counter(
            "bus_reclaimed",
            "Unacknowledged events taken over after bus.reclaim_idle (XAUTOCLAIM)",
            ("topic", "group"),
        )
        self.bus_dead_lettered = self._counter(
            "bus_dead_lettered",
            "Events moved to the dead-letter stream (max_deliveries or undecodable)",
            ("topic", "group", "reason"),
        )
        self.bus_lost = self._counter(
            "bus_lost",
            "Unacknowledged events trimmed off their stream before a retry (raise bus.maxlen)",
            ("topic", "group"),
        )
        self.bus_gaps = self._counter(
            "bus_gaps",
            "Broadcast subscribers that found events they will never see (trimmed, Redis reset)",
            ("topic",),
        )
        self.bus_undecodable = self._counter(
            "bus_undecodable",
            "Stream entries that are not bus events (dead-lettered by work groups, skipped by "
            "broadcast subscribers)",
            ("topic", "group"),
        )
        self.bus_reconnects = self._counter(
            "bus_reconnects", "Subscriptions that lost Redis and got it back", ("topic", "group")
        )
        self.bus_stream_length = self._gauge(
            "bus_stream_length", "Entries in a bus stream (as of the last reclaim pass)", ("topic",)
        )
        self.bus_group_pending = self._gauge(
            "bus_group_pending",
            "Events delivered to a work group and not acknowledged yet",
            ("topic", "group"),
        )
        self.bus_group_lag = self._gauge(
            "bus_group_lag",
            "Events in the stream a work group has not read yet",
            ("topic", "group"),
        )

    def _cluster(self) -> None:
        """Several hub processes (hub.cluster, hub.dispatch.leadership)."""
        self.lease_changes = self._counter(
            "lease_changes", "Dispatch terms this process began or ended", ("change",)
        )
        self.cluster_messages = self._counter(
            "cluster_messages",
            "Agent calls, answers, frames and visitor frames between nodes",
            ("kind", "direction"),
        )
        self.cluster_calls_failed = self._counter(
            "cluster_calls_failed",
            "Agent calls the dispatch owner did not answer in time (the agent saw unavailable)",
        )
        self.cluster_resyncs = self._counter(
            "cluster_resyncs",
            "Times this node lost frames for its agents and made their consoles resync",
        )
        self.cluster_nodes = self._gauge(
            "cluster_nodes", "Nodes the dispatch owner hears from (0 on a standby)"
        )
        self.cluster_nodes_expired = self._counter(
            "cluster_nodes_expired",
            "Nodes the dispatch owner took for dead (silent for cluster.node_timeout)",
        )
        self.event_outbox_pending = Gauge(
            "channelhub_event_outbox_pending",
            "Bus events committed and not yet published (the event outbox)",
            registry=self.registry,
        )
        self.event_outbox_oldest_seconds = Gauge(
            "channelhub_event_outbox_oldest_seconds",
            "Age of the oldest unpublished event in the event outbox (relay lag)",
            registry=self.registry,
        )
        self.event_outbox_deferred = Counter(
            "channelhub_event_outbox_deferred",
            "Events whose publish right after the commit failed, left to the relay",
            ["topic"],
            registry=self.registry,
        )
        self.event_outbox_relayed = Counter(
            "channelhub_event_outbox_relayed",
            "Events published by a relay (their first publish failed or its process died)",
            ["topic"],
            registry=self.registry,
        )
