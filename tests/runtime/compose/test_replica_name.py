"""How a Compose worker finds its replica number (sandbox/replica_name.py): pure logic, no engine.

The lookup itself (dnspython asking Docker's DNS) runs in tests/runtime/compose/test_compose_cluster.py,
where the workers' ids must name the same replicas as Queues, status and Logs do.
"""

from sandbox.replica_name import DOCKER_DNS, _uses_docker_dns, container_name, docker_dns_resolver, replica_number


def test_the_number_is_the_last_part_of_the_container_name_for_both_compose_versions() -> None:
    assert replica_number("myproj-1a2b3c4d-researcher_worker-12.myproj-1a2b3c4d_default") == 12  # v2
    assert replica_number("myproj_researcher_worker_3.myproj_default") == 3  # v1
    assert replica_number("c3x-proj-researcher_worker-2.c3dnstest") == 2  # as Docker 20.10's DNS answered
    assert replica_number("3ed3bd7947f0") is None  # a bare container id


def test_only_a_container_pointed_at_dockers_dns_asks_it(tmp_path) -> None:
    compose = tmp_path / "compose.conf"
    compose.write_text("search example.org\nnameserver 127.0.0.11\noptions ndots:0\n")
    host = tmp_path / "host.conf"
    host.write_text("nameserver 10.0.0.53\n# nameserver 127.0.0.11\n")
    assert _uses_docker_dns(str(compose))
    assert not _uses_docker_dns(str(host))
    assert not _uses_docker_dns(str(tmp_path / "missing.conf"))


def test_the_resolver_asks_docker_dns_alone_with_a_short_lifetime() -> None:
    resolver = docker_dns_resolver(timeout=0.5, lifetime=1.5)
    assert [str(ns) for ns in resolver.nameservers] == [DOCKER_DNS] == ["127.0.0.11"]
    assert not resolver.search  # configure=False: nothing read from this machine's resolv.conf
    assert (resolver.timeout, resolver.lifetime) == (0.5, 1.5)


def test_a_dns_server_that_does_not_answer_gives_no_name() -> None:
    from sandbox.brokers.ports import free_ports

    resolver = docker_dns_resolver(timeout=0.2, lifetime=0.6)
    resolver.nameservers, resolver.port = ["127.0.0.1"], free_ports(1)[0]  # a real port nobody listens on
    assert container_name("127.0.0.1", resolver) is None
