"""One logging setup and one JSON schema for the operator, the agent and the router (kopf's own
records included): {"time", "level", "logger", "message"} plus "object" (the Kubernetes object a
kopf record is about) and "exception" when present."""
from __future__ import annotations

import json
import logging
import sys
from typing import Any


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
                               "level": record.levelname.lower(), "logger": record.name,
                               "message": record.getMessage()}
        if ref := getattr(record, "k8s_ref", None):
            out["object"] = ref
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class PlainFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        ref = getattr(record, "k8s_ref", None)
        line = super().formatMessage(record)
        return f"{line} [{ref.get('namespace') or ''}/{ref.get('name')}]" if ref else line


def setup(log_format: str, verbose: bool) -> None:
    """Every record to standard error in `log_format` (json or plain); debug when verbose."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else PlainFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("asyncio").setLevel(logging.DEBUG if verbose else logging.WARNING)
