"""The agent's config file: the EgressRouter object (JSON or YAML), parsed by the one spec parser."""
from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import yaml

from netshift.egressrouter.spec import ConfigError, Problem, RouterConfig, load

__all__ = ["ConfigError", "load_document", "parse_text"]


def load_document(text: str) -> Any:
    """JSON or YAML (JSON is YAML, but json gives better errors for JSON files)."""
    try:
        return json.loads(text) if text.lstrip().startswith("{") else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        kind = "JSON" if isinstance(exc, json.JSONDecodeError) else "YAML"
        raise ConfigError(Problem("InvalidDocument", "config", f"invalid {kind}: {exc}")) from None


def parse_text(text: str, *, agent_ports: Iterable[int] = ()) -> RouterConfig:
    return load(load_document(text), agent_ports=agent_ports)
