"""Helpers shared by the subcommands' argument parsers."""
from __future__ import annotations

import os


def env_int(name: str, default: int) -> int:
    """An integer default that an environment variable may override (empty means unset)."""
    value = os.environ.get(name)
    return int(value) if value else default
