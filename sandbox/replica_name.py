"""Inside a Compose container: which replica of its service this is (the 2 of researcher_worker-2).

A worker's id names it in Queues (consumer names), status, trace and its responses; the local
runtime sets it to the replica's name (LADDR_WORKER_ID=researcher_worker-2), which is also how
Logs tags the replica's lines. Compose cannot set a variable per replica, but it names each
replica's container after its number (v2 `<project>-<service>-<n>`, v1 `<project>_<service>_<n>`)
and Docker's embedded DNS answers a reverse lookup of the container's address with that name.
/etc/hosts maps the address to the container id instead, so the DNS server is asked directly.
Standard library only (a worker image needs nothing more).
"""

from __future__ import annotations

import random
import re
import socket
import struct

DOCKER_DNS = ("127.0.0.11", 53)
NUMBERED = re.compile(r"[-_](\d+)$")


def ptr_query(ip: str, ident: int) -> bytes:
    labels = [*reversed(ip.split(".")), "in-addr", "arpa"]
    question = b"".join(bytes([len(p)]) + p.encode() for p in labels) + b"\0" + struct.pack(">HH", 12, 1)
    return struct.pack(">HHHHHH", ident, 0x0100, 1, 0, 0, 0) + question


def _name_at(data: bytes, pos: int) -> tuple[str, int]:
    """A (possibly compressed) DNS name at pos; returns it and the offset after it."""
    labels, end = [], None
    for _ in range(64):  # a loop of pointers is a broken answer, not a hang
        size = data[pos]
        if size & 0xC0 == 0xC0:
            end = pos + 2 if end is None else end
            pos = ((size & 0x3F) << 8) | data[pos + 1]
            continue
        if size == 0:
            return ".".join(labels), (pos + 1 if end is None else end)
        labels.append(data[pos + 1:pos + 1 + size].decode(errors="replace"))
        pos += 1 + size
    raise ValueError("DNS name too long")


def parse_ptr_answer(data: bytes, ident: int) -> str | None:
    """The first PTR name of a DNS answer to query `ident`, else None."""
    got, flags, questions, answers = struct.unpack(">HHHH", data[:8])
    if got != ident or flags & 0x000F or not answers:
        return None
    pos = 12
    for _ in range(questions):
        pos = _name_at(data, pos)[1] + 4
    for _ in range(answers):
        pos = _name_at(data, pos)[1]
        kind, _cls, _ttl, size = struct.unpack(">HHIH", data[pos:pos + 10])
        pos += 10
        if kind == 12:
            return _name_at(data, pos)[0]
        pos += size
    return None


def replica_number(container_name: str) -> int | None:
    """3 of `proj-researcher_worker-3.proj_default` (the network's name follows the first dot)."""
    match = NUMBERED.search(container_name.split(".", 1)[0])
    return int(match.group(1)) if match else None


def _uses_docker_dns(resolv: str = "/etc/resolv.conf") -> bool:
    """Docker points a container of a user-defined network (every Compose one) at its own DNS."""
    try:
        with open(resolv) as f:
            return any(line.split()[:2] == ["nameserver", DOCKER_DNS[0]] for line in f)
    except OSError:
        return False


def compose_replica_number(timeout: float = 1.0, attempts: int = 3) -> int | None:
    """This container's replica number from Docker's DNS; None outside a Compose network."""
    if not _uses_docker_dns():
        return None
    try:
        ip = socket.gethostbyname(socket.gethostname())
    except OSError:
        return None
    for _ in range(attempts):
        ident = random.randrange(1 << 16)
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.settimeout(timeout)
                sock.sendto(ptr_query(ip, ident), DOCKER_DNS)
                name = parse_ptr_answer(sock.recv(1024), ident)
        except (OSError, ValueError, struct.error, IndexError):
            continue
        if name:
            return replica_number(name)
    return None
