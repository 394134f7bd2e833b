"""Server slots and runtime API commands (router/runtime.py): pure, no HAProxy."""
from __future__ import annotations

import pytest

from netshift.router.runtime import RuntimeAPI, RuntimeAPIError, Server, assign, commands, errors, slot_count

A, B, C = Server("10.0.0.1", 80, 256), Server("10.0.0.2", 80, 256), Server("fd00::3", 8080, 256)


@pytest.mark.parametrize(("servers", "minimum", "expected"), [(0, 8, 8), (5, 8, 8), (9, 8, 16), (17, 1, 32), (0, 0, 1)])
def test_slot_count_is_a_power_of_two(servers: int, minimum: int, expected: int) -> None:
    assert slot_count(servers, minimum) == expected


def test_assign_keeps_slots_and_grows_in_powers_of_two() -> None:
    assert assign(None, [A, B], 4) == (A, B, None, None)
    assert assign((A, B, None, None), [B, C], 4) == (C, B, None, None)  # B stays, C takes A's slot
    assert assign((A, B, None, None), [Server("10.0.0.1", 80, 7)], 4) == (Server("10.0.0.1", 80, 7), None, None, None)
    grown = assign((A, None), [A, B, C], 2)
    assert grown == (A, B, C, None)


def test_commands_fill_empty_reweight_and_refuse_other_sizes() -> None:
    assert commands("be", (A, None), (A, None)) == []
    assert commands("be", (A, None), (None, C)) == [
        "set server be/s1 state maint",
        "set server be/s2 addr fd00::3 port 8080", "set server be/s2 weight 256",
        "set server be/s2 state ready", "set server be/s2 health up"]
    assert commands("be", (A, B), (Server("10.0.0.1", 80, 10), C)) == [
        "set server be/s1 weight 10", "set server be/s2 addr fd00::3 port 8080"]
    assert commands("be", (A, None), (A, None, None, None)) is None


def test_errors_in_answers() -> None:
    ok = "IP changed from '127.0.0.1' to '::1', port changed from '1' to '80' by 'stats socket command'\n\n\n"
    assert errors(ok + "no need to change the addr, port changed from '1' to '2' by 'x'\n") == []
    assert errors(ok + "No such server.\n\n") == ["No such server."]


def test_runtime_api_reports_an_unreachable_socket(tmp_path) -> None:
    with pytest.raises(RuntimeAPIError, match="admin socket"):
        RuntimeAPI(str(tmp_path / "none.sock")).apply(["set server be/s1 state maint"])
