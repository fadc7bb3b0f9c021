"""JSON log lines are one parseable object each."""

from __future__ import annotations

import json
import logging

from hub.logs import JsonFormatter


def test_json_formatter() -> None:
    record = logging.LogRecord("hub.app", logging.WARNING, __file__, 1, "hello %s", ("x",), None)
    record.conversation_id = "c1"
    entry = json.loads(JsonFormatter().format(record))
    assert entry["level"] == "warning" and entry["msg"] == "hello x"
    assert entry["logger"] == "hub.app" and entry["conversation_id"] == "c1"
    assert entry["ts"].endswith("Z")
