"""Announcing the router's addresses after a takeover: gratuitous ARP (IPv4) and unsolicited
neighbour advertisements (IPv6, RFC 4861 7.2.6), so the neighbours on the egress segment move the
addresses to the new pod's MAC at once instead of when their caches expire.

The frame builders are pure; `send` is the thin edge (an AF_PACKET socket: needs CAP_NET_RAW).
The active also defends its IPv4 addresses: an ARP frame from another MAC claiming one of them (the
CNI plugin of a new standby pod sends a gratuitous ARP when it attaches its interface) is answered
with a new announcement at once, so the neighbours never keep the silent standby's MAC.
"""
from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Iterable

BROADCAST = b"\xff" * 6
ALL_NODES_MAC = bytes.fromhex("333300000001")  # ff02::1 on Ethernet
ALL_NODES = ipaddress.IPv6Address("ff02::1")
ETH_P_ARP, ETH_P_IPV6 = 0x0806, 0x86DD
ICMPV6_NEIGHBOR_ADVERT = 136
NA_FLAG_OVERRIDE = 0x20000000


def mac_bytes(mac: str) -> bytes:
    out = bytes.fromhex(mac.replace(":", ""))
    if len(out) != 6:
        raise ValueError(f"not an Ethernet address: {mac!r}")
    return out


def gratuitous_arp(mac: bytes, ip: ipaddress.IPv4Address) -> bytes:
    """A broadcast ARP request for our own address (sender = target = ip), as `arping -U` sends."""
    arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, mac, ip.packed, b"\0" * 6, ip.packed)
    return BROADCAST + mac + struct.pack("!H", ETH_P_ARP) + arp


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return int(~total & 0xFFFF)


def unsolicited_na(mac: bytes, ip: ipaddress.IPv6Address) -> bytes:
    """An unsolicited neighbour advertisement to all nodes: Override set, Solicited clear, with the
    target link-layer address option."""
    body = struct.pack("!BBHI16sBB6s", ICMPV6_NEIGHBOR_ADVERT, 0, 0, NA_FLAG_OVERRIDE, ip.packed, 2, 1, mac)
    pseudo = ip.packed + ALL_NODES.packed + struct.pack("!IxxxB", len(body), socket.IPPROTO_ICMPV6)
    body = body[:2] + struct.pack("!H", _checksum(pseudo + body)) + body[4:]
    header = struct.pack("!IHBB16s16s", 6 << 28, len(body), socket.IPPROTO_ICMPV6, 255, ip.packed,
                         ALL_NODES.packed)
    return ALL_NODES_MAC + mac + struct.pack("!H", ETH_P_IPV6) + header + body


def frames(mac: bytes, addresses: Iterable[ipaddress.IPv4Address | ipaddress.IPv6Address]) -> list[bytes]:
    return [gratuitous_arp(mac, a) if a.version == 4 else unsolicited_na(mac, a) for a in addresses]


def foreign_claim(frame: bytes, mac: bytes,
                  addresses: Iterable[ipaddress.IPv4Address | ipaddress.IPv6Address]) -> ipaddress.IPv4Address | None:
    """The address of ours that an ARP frame from another MAC claims as its sender (a new pod's CNI
    plugin announces the router's address when it attaches the interface), else None."""
    if len(frame) < 42 or frame[12:14] != struct.pack("!H", ETH_P_ARP) or frame[6:12] == mac:
        return None
    sha, spa = frame[22:28], ipaddress.IPv4Address(frame[28:32])
    return spa if sha != mac and spa in set(addresses) else None


def send(interface: str, addresses: Iterable[ipaddress.IPv4Address | ipaddress.IPv6Address]) -> int:
    """Announce `addresses` on `interface`; returns the number of frames sent."""
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sock:
        sock.bind((interface, 0))
        mac = sock.getsockname()[4][:6]
        out = frames(mac, addresses)
        for frame in out:
            sock.send(frame)
    return len(out)
