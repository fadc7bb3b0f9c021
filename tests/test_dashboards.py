"""deploy/grafana/channelhub.json and deploy/prometheus/alerts.yaml parse, and every metric (and
label) they use is one a running hub's /metrics exposes, registered in hub/metrics.py."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

from hub.gauges import OutboxFigures, outbox_figures
from hub.metrics import Metrics
from hub.store.schema import conversations, customers, messages, outbox
from tests.conftest import make_settings
from tests.helpers import hub_store, running_hub

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy" / "grafana" / "channelhub.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yaml"
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gauge": ("",),
}
_SELECTOR = re.compile(r"\b(channelhub_[a-zA-Z0-9_]+)\s*(\{[^}]*\})?")
_MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
_GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
_DURATION = re.compile(r"^\d+[smhdw]$")


def registered() -> dict[str, tuple[str, tuple[str, ...]]]:
    """Every metric hub/metrics.py registers: name -> (type, label names)."""
    metrics = Metrics()
    found = {}
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            found[value._name] = (value._type, tuple(value._labelnames))
    return found


def series_names(families: dict[str, tuple[str, tuple[str, ...]]]) -> dict[str, tuple[str, ...]]:
    """The series names PromQL can select (``_total``, ``_bucket`` …) -> their label names."""
    names = {}
    for family, (kind, labels) in families.items():
        for suffix in SUFFIXES[kind]:
            names[family + suffix] = labels + (("le",) if suffix == "_bucket" else ())
    return names


def dashboard_queries(node: Any) -> Iterator[str]:
    """Every PromQL text of the dashboard: panel targets and template variable queries."""
    if isinstance(node, dict):
        for key, value in node.items():
            if (key in {"expr", "definition"} and isinstance(value, str)) or (
                key == "query" and isinstance(value, str) and "(" in value
            ):
                yield value
            else:
                yield from dashboard_queries(value)
    elif isinstance(node, list):
        for item in node:
            yield from dashboard_queries(item)


def check_expression(expr: str, series: dict[str, tuple[str, ...]]) -> set[str]:
    """Problems with one expression: unknown metrics, labels a metric does not have, grouping
    by labels none of its metrics has. Returns the labels its result may carry."""
    used = _SELECTOR.findall(expr)
    assert used, f"no channelhub metric in {expr!r}"
    labels: set[str] = set()
    for name, matchers in used:
        assert name in series, f"{name} (in {expr!r}) is not exposed by /metrics"
        known = set(series[name])
        labels |= known
        for label in _MATCHER.findall(matchers or ""):
            assert label in known, f"{name} has no label {label!r} (in {expr!r})"
    for group in _GROUPING.findall(expr):
        for label in (part.strip() for part in group.split(",") if part.strip()):
            assert label in labels, f"grouping by {label!r}, which none of {expr!r} has"
    if match := re.fullmatch(r"label_values\((channelhub_\w+),\s*(\w+)\)", expr.strip()):
        assert match.group(2) in series[match.group(1)]
    return labels


@pytest.fixture(scope="module")
def exposed() -> dict[str, tuple[str, tuple[str, ...]]]:
    """The metric families a running hub (SQLite, one web chat instance) serves at /metrics."""
    import tempfile

    async def scrape() -> str:
        with tempfile.TemporaryDirectory() as root:
            settings = make_settings(f"sqlite+aiosqlite:///{root}/hub.db", Path(root))
            async with running_hub(settings) as hub, aiohttp.ClientSession() as session:
                for _ in range(100):  # the sampled gauges appear right after start-up
                    async with session.get(f"{hub.url}/metrics") as response:
                        assert response.status == 200
                        body = await response.text()
                    if "channelhub_connector_up{" in body:
                        return body
                    await asyncio.sleep(0.05)
                raise AssertionError("the sampled gauges never appeared in /metrics")

    body = asyncio.run(scrape())
    assert 'channelhub_connector_up{channel="webchat",connector="webchat"} 1.0' in body
    families = {}
    for family in text_string_to_metric_families(body):
        if family.name.startswith("channelhub_"):
            labels = {name for sample in family.samples for name in sample.labels}
            families[family.name] = (family.type, tuple(sorted(labels - {"le"})))
    # the text format has no type for a histogram's _created series: the parser makes it a
    # family of its own
    return {
        name: value
        for name, value in families.items()
        if not (name.endswith("_created") and name.removesuffix("_created") in families)
    }


def test_metrics_exposed_are_the_registered_ones(
    exposed: dict[str, tuple[str, tuple[str, ...]]],
) -> None:
    mine = registered()
    assert set(exposed) == set(mine)
    for name, (kind, labels) in exposed.items():
        assert kind == mine[name][0]
        assert set(labels) <= set(mine[name][1])  # a labelled metric without samples has none


def test_grafana_dashboard(exposed: dict[str, tuple[str, tuple[str, ...]]]) -> None:
    series = series_names(registered())
    assert set(series) >= set(series_names(exposed))
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 30
    panels = dashboard["panels"]
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    referenced: set[str] = set()
    for panel in panels:
        assert {"type", "title", "gridPos"} <= set(panel)
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}"
        for target in panel["targets"]:
            assert target["refId"] and target["expr"]
    for expr in dashboard_queries(dashboard):
        check_expression(expr.replace("$__rate_interval", "5m"), series)
        referenced |= {name for name, _ in _SELECTOR.findall(expr)}
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    for expr in dashboard_queries(dashboard):
        for variable in re.findall(r"\$(\w+)", expr):
            assert variable in variables | {"__rate_interval"}, variable
    # what an operator looks at: queues, waits, SLA, channels, agents, errors
    titles = " ".join(panel["title"].lower() for panel in panels)
    for topic in ("waiting", "wait", "sla", "inbound", "agents", "failed", "dead letters"):
        assert topic in titles, topic
    families = {re.sub(r"_(total|bucket|count|sum)$", "", name) for name in referenced}
    unused = set(registered()) - families
    assert not unused, f"metrics the dashboard does not show: {sorted(unused)}"


def test_prometheus_alert_rules() -> None:
    series = series_names(registered())
    document = yaml.safe_load(ALERTS.read_text())
    rules = [rule for group in document["groups"] for rule in group["rules"]]
    assert all(group["name"] for group in document["groups"])
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names))
    for needed in (
        "ChannelhubQueueSlaBreaching",
        "ChannelhubOutboxBacklog",
        "ChannelhubConnectorUnhealthy",
        "ChannelhubDeadLetters",
    ):
        assert needed in names
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        if "for" in rule:
            assert _DURATION.match(rule["for"]), rule["for"]
        labels = check_expression(rule["expr"], series)
        grouped = set()
        for group in _GROUPING.findall(rule["expr"]):
            grouped |= {part.strip() for part in group.split(",")}
        for text in rule["annotations"].values():
            for label in re.findall(r"\$labels\.(\w+)", text):
                assert label in grouped & labels, (rule["alert"], label)
            for name, _ in _SELECTOR.findall(text):  # queries inside templates
                assert name in series, name


async def test_outbox_gauges_from_the_store(store_url: str) -> None:
    store = hub_store(store_url, clock=lambda: 1000.0)
    await store.start()
    try:
        assert await outbox_figures(store, 1000.0) == OutboxFigures(0, 0.0, 0)
        async with store.engine.begin() as connection:
            await connection.execute(
                customers.insert(), {"id": "k", "kind": "prospect", "created_at": 0.0}
            )
            await connection.execute(
                conversations.insert(),
                {
                    "id": "c",
                    "customer_id": "k",
                    "channel": "sms",
                    "inbox": "sms",
                    "status": "assigned",
                    "queue": "general",
                    "priority": "normal",
                    "created_at": 0.0,
                    "updated_at": 0.0,
                },
            )
            for index, (status, created) in enumerate(
                [("pending", 900.0), ("pending", 950.0), ("failed", 100.0), ("sent", 10.0)]
            ):
                await connection.execute(
                    messages.insert(),
                    {
                        "id": f"m{index}",
                        "conversation_id": "c",
                        "kind": "message",
                        "direction": "outbound",
                        "channel": "sms",
                        "inbox": "sms",
                        "idempotency_key": f"k{index}",
                        "text": "x",
                        "created_at": created,
                    },
                )
                await connection.execute(
                    outbox.insert(),
                    {
                        "message_id": f"m{index}",
                        "inbox": "sms",
                        "payload": "{}",
                        "status": status,
                        "attempts": 1,
                        "next_attempt_at": created,
                        "created_at": created,
                    },
                )
        figures = await outbox_figures(store, 1000.0)
        assert (figures.pending, figures.oldest_pending_seconds, figures.dead_letters) == (
            2,
            100.0,
            1,
        )
    finally:
        await store.close()
