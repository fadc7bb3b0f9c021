"""Prometheus metrics, one registry per application so tests can run several hubs at once."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.messages_in = Counter(
            "channelhub_messages_in",
            "Inbound messages stored",
            ["channel"],
            registry=self.registry,
        )
        self.messages_duplicate = Counter(
            "channelhub_messages_duplicate",
            "Redeliveries recognized and not stored again",
            ["channel"],
            registry=self.registry,
        )
        self.messages_out = Counter(
            "channelhub_messages_out",
            "Outbound messages handed to a channel",
            ["channel", "status"],
            registry=self.registry,
        )
        self.call_events = Counter(
            "channelhub_call_events",
            "Phone call timeline events recorded (ringing, answered, abandoned, ...)",
            ["state"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "channelhub_queue_depth",
            "Conversations waiting for an agent",
            ["queue"],
            registry=self.registry,
        )
        self.offer_accept_seconds = Histogram(
            "channelhub_offer_accept_seconds",
            "Time from an offer to its acceptance",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60),
            registry=self.registry,
        )
        self.queue_wait_seconds = Histogram(
            "channelhub_queue_wait_seconds",
            "Time from queueing to acceptance",
            ["queue"],
            buckets=(0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
            registry=self.registry,
        )
        self.first_response_seconds = Histogram(
            "channelhub_first_response_seconds",
            "Time from queueing to the first agent reply",
            ["queue"],
            buckets=(5, 15, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 24 * 3600),
            registry=self.registry,
        )
        self.sla_breaches = Counter(
            "channelhub_sla_breaches",
            "First replies later than the SLA the rules set",
            ["queue"],
            registry=self.registry,
        )
        self.offers = Counter(
            "channelhub_offers", "Offer outcomes", ["queue", "outcome"], registry=self.registry
        )
        self.requeued = Counter(
            "channelhub_requeued",
            "Conversations sent back to their queue",
            ["queue", "reason"],
            registry=self.registry,
        )
        self.abandoned = Counter(
            "channelhub_abandoned",
            "Customers who left a live channel while waiting, and did not come back in time",
            ["queue"],
            registry=self.registry,
        )
        self.agent_sockets_dropped = Counter(
            "channelhub_agent_sockets_dropped",
            "Agent sockets dropped because the console stopped reading (it resyncs on reconnect)",
            ["reason"],
            registry=self.registry,
        )
        # sampled from the store and the connectors (hub.gauges): every process of a
        # deployment reports the same outbox figures, so alert rules take max()
        self.outbox_pending = Gauge(
            "channelhub_outbox_pending",
            "Replies waiting in the outbox to be sent (or retried)",
            registry=self.registry,
        )
        self.outbox_oldest_pending_seconds = Gauge(
            "channelhub_outbox_oldest_pending_seconds",
            "Age of the oldest reply waiting in the outbox (0 when none waits)",
            registry=self.registry,
        )
        self.outbox_dead_letters = Gauge(
            "channelhub_outbox_dead_letters",
            "Replies that failed for good (no more retries) and stay in the outbox",
            registry=self.registry,
        )
        self.connector_up = Gauge(
            "channelhub_connector_up",
            "1 while a channel instance can receive, 0 while its health check reports a problem",
            ["connector", "channel"],
            registry=self.registry,
        )
        self.agents_connected = Gauge(
            "channelhub_agents_connected",
            "Agents with at least one console open",
            registry=self.registry,
        )
        # the Redis Streams bus (memory:// counts nothing: it has no acks, reclaims or streams);
        # group is "broadcast" for broadcast subscriptions
        self.bus_published = Counter(
            "channelhub_bus_published",
            "Events written to a bus stream",
            ["topic"],
            registry=self.registry,
        )
        self.bus_publish_failed = Counter(
            "channelhub_bus_publish_failed",
            "Publishes refused with BusUnavailable (Redis unreachable or not writable)",
            ["topic"],
            registry=self.registry,
        )
        self.bus_delivered = Counter(
            "channelhub_bus_delivered",
            "Events handed to a subscriber, redeliveries included",
            ["topic", "group"],
            registry=self.registry,
        )
        self.bus_acked = Counter(
            "channelhub_bus_acked",
            "Events acknowledged by their handler",
            ["topic", "group"],
            registry=self.registry,
        )
        self.bus_reclaimed = Counter(
            "channelhub_bus_reclaimed",
            "Unacknowledged events taken over after bus.reclaim_idle (XAUTOCLAIM)",
            ["topic", "group"],
            registry=self.registry,
        )
        self.bus_dead_lettered = Counter(
            "channelhub_bus_dead_lettered",
            "Events moved to the dead-letter stream (max_deliveries or undecodable)",
            ["topic", "group", "reason"],
            registry=self.registry,
        )
        self.bus_lost = Counter(
            "channelhub_bus_lost",
            "Unacknowledged events trimmed off their stream before a retry (raise bus.maxlen)",
            ["topic", "group"],
            registry=self.registry,
        )
        self.bus_gaps = Counter(
            "channelhub_bus_gaps",
            "Broadcast subscribers that found events they will never see (trimmed, Redis reset)",
            ["topic"],
            registry=self.registry,
        )
        self.bus_undecodable = Counter(
            "channelhub_bus_undecodable",
            "Stream entries that are not bus events (dead-lettered by work groups, skipped by "
            "broadcast subscribers)",
            ["topic", "group"],
            registry=self.registry,
        )
        self.bus_reconnects = Counter(
            "channelhub_bus_reconnects",
            "Subscriptions that lost Redis and got it back",
            ["topic", "group"],
            registry=self.registry,
        )
        self.bus_stream_length = Gauge(
            "channelhub_bus_stream_length",
            "Entries in a bus stream (as of the last reclaim pass)",
            ["topic"],
            registry=self.registry,
        )
        self.bus_group_pending = Gauge(
            "channelhub_bus_group_pending",
            "Events delivered to a work group and not acknowledged yet",
            ["topic", "group"],
            registry=self.registry,
        )
        self.bus_group_lag = Gauge(
            "channelhub_bus_group_lag",
            "Events in the stream a work group has not read yet",
            ["topic", "group"],
            registry=self.registry,
        )
        # several hub processes (hub.cluster, hub.dispatch.leadership)
        self.lease_changes = Counter(
            "channelhub_lease_changes",
            "Dispatch terms this process began or ended",
            ["change"],
            registry=self.registry,
        )
        self.cluster_messages = Counter(
            "channelhub_cluster_messages",
            "Agent calls, answers, frames and visitor frames between nodes",
            ["kind", "direction"],
            registry=self.registry,
        )
        self.cluster_calls_failed = Counter(
            "channelhub_cluster_calls_failed",
            "Agent calls the dispatch owner did not answer in time (the agent saw unavailable)",
            registry=self.registry,
        )
        self.cluster_resyncs = Counter(
            "channelhub_cluster_resyncs",
            "Times this node lost frames for its agents and made their consoles resync",
            registry=self.registry,
        )
        self.cluster_nodes = Gauge(
            "channelhub_cluster_nodes",
            "Nodes the dispatch owner hears from (0 on a standby)",
            registry=self.registry,
        )
        self.cluster_nodes_expired = Counter(
            "channelhub_cluster_nodes_expired",
            "Nodes the dispatch owner took for dead (silent for cluster.node_timeout)",
            registry=self.registry,
        )
