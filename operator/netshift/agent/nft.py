"""Thin edge to nftables: the `nft` tool in JSON mode (`nft -j -f -`), one batch per call."""
from __future__ import annotations

import json
import os
import subprocess
from typing import Any, cast

from netshift.agent.ruleset import TABLE


class NftError(RuntimeError):
    pass


def _run(args: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    nft = os.environ.get("NETSHIFT_NFT") or "nft"  # read when used, never at import
    try:
        return subprocess.run([nft, *args], input=stdin, text=True, capture_output=True, timeout=30)
    except FileNotFoundError:
        raise NftError(f"{nft!r} not found: the agent needs the nftables command-line tool") from None


def apply(batch: dict[str, Any]) -> None:
    """Run one batch; the kernel commits all of it or nothing."""
    proc = _run(["-j", "-f", "-"], json.dumps(batch))
    if proc.returncode != 0:
        raise NftError(f"nft rejected the ruleset: {proc.stderr.strip()}")


def list_table(family: str, name: str = TABLE) -> list[dict[str, Any]] | None:
    """The table's objects as `nft -j` lists them (with handles and counter values); None if absent."""
    proc = _run(["-j", "list", "table", family, name])
    if proc.returncode != 0:
        if "No such file or directory" in proc.stderr:
            return None
        raise NftError(f"nft list table {family} {name}: {proc.stderr.strip()}")
    return cast(list[dict[str, Any]], json.loads(proc.stdout)["nftables"])

