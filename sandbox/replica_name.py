"""Inside a Compose container: which replica of its service this is (the 2 of researcher_worker-2).

A worker's id names it in Queues (consumer names), status, trace and its responses; the local
runtime sets it to the replica's name (LADDR_WORKER_ID=researcher_worker-2), which is also how
Logs tags the replica's lines. Compose cannot set a variable per replica, but it names each
replica's container after its number (v2 `<project>-<service>-<n>`, v1 `<project>_<service>_<n>`)
and Docker's embedded DNS answers a reverse lookup of the container's address with that name.
/etc/hosts maps the address to the container id instead, so the DNS server is asked directly
(with dnspython, not the system resolver, which would read /etc/hosts first).
"""

from __future__ import annotations

import re
import socket

import dns.exception
import dns.resolver

DOCKER_DNS = "127.0.0.11"
NUMBERED = re.compile(r"[-_](\d+)$")


def replica_number(container_name: str) -> int | None:
    """3 of `proj-researcher_worker-3.proj_default` (the network's name follows the first dot)."""
    match = NUMBERED.search(container_name.split(".", 1)[0])
    return int(match.group(1)) if match else None


def _uses_docker_dns(resolv: str = "/etc/resolv.conf") -> bool:
    """Docker points a container of a user-defined network (every Compose one) at its own DNS."""
    try:
        with open(resolv) as f:
            return any(line.split()[:2] == ["nameserver", DOCKER_DNS] for line in f)
    except OSError:
        return False


def docker_dns_resolver(timeout: float = 1.0, lifetime: float = 3.0) -> dns.resolver.Resolver:
    """A resolver that asks only Docker's DNS: timeout per try, lifetime for all tries together."""
    resolver = dns.resolver.Resolver(configure=False)  # not /etc/resolv.conf: its search domains add nothing
    resolver.nameservers = [DOCKER_DNS]
    resolver.timeout, resolver.lifetime = timeout, lifetime
    return resolver


def container_name(ip: str, resolver: dns.resolver.Resolver) -> str | None:
    """The name a reverse (PTR) lookup of ip gives, without the final dot; None on any failure."""
    try:
        answer = resolver.resolve_address(ip)
    except (OSError, dns.exception.DNSException):
        return None
    return next((r.target.to_text(omit_final_dot=True) for r in answer), None)


def compose_replica_number(timeout: float = 1.0, lifetime: float = 3.0) -> int | None:
    """This container's replica number from Docker's DNS; None outside a Compose network."""
    if not _uses_docker_dns():
        return None
    try:
        ip = socket.gethostbyname(socket.gethostname())
    except OSError:
        return None
    name = container_name(ip, docker_dns_resolver(timeout, lifetime))
    return replica_number(name) if name else None
