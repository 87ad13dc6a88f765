"""How the local runtime names, addresses and counts the nodes of a KRaft cluster (no processes)."""

from __future__ import annotations

from pathlib import Path

from sandbox.runtime.local.kafka_nodes import bootstrap, is_broker_program, node_count_change, node_programs, port_keys
from sandbox.runtime.local.kafka_nodes import port_owner, storage_dir
from sandbox.runtime.local.programs import service_of
from sandbox.runtime.local.status import replicas_of


def test_one_node_keeps_its_old_program_and_ports() -> None:
    assert node_programs(1) == ["kafka"] and port_keys(1) == ("kafka", "kafka_controller")
    assert port_owner("kafka_controller", 1) == "kafka"
    assert bootstrap({"kafka": 9092, "kafka_controller": 9093}, 1) == "127.0.0.1:9092"


def test_three_nodes_are_the_replicas_of_one_service() -> None:
    programs = node_programs(3)
    assert programs == ["kafka-1", "kafka-2", "kafka-3"]
    assert {service_of(p) for p in programs} == {"kafka"} and all(map(is_broker_program, programs))
    assert replicas_of("kafka", [*programs, "api", "researcher_worker-1"]) == [(1, "kafka-1"), (2, "kafka-2"), (3, "kafka-3")]
    assert port_owner("kafka_controller_3", 3) == "kafka-3" and port_owner("kafka", 3) == "kafka-1"
    ports = dict(zip(port_keys(3), range(9000, 9006)))
    assert bootstrap(ports, 3) == "127.0.0.1:9000,127.0.0.1:9002,127.0.0.1:9004"
    assert bootstrap({"kafka": 1}, 3) is None  # ports not chosen yet


def test_worker_and_api_programs_are_not_brokers() -> None:
    assert not is_broker_program("api") and not is_broker_program("researcher_worker-2")
    assert replicas_of("api", ["api"]) == [(1, "api")] and replicas_of("redis", ["redis"]) == [(1, "redis")]


def test_another_node_count_says_it_starts_on_other_storage(tmp_path: Path) -> None:
    assert storage_dir(tmp_path, 1) == tmp_path / "kafka" and storage_dir(tmp_path, 3) == tmp_path / "kafka-3nodes"
    assert node_count_change(tmp_path, 1, 3) is None  # Kafka never ran here: nothing to say
    storage_dir(tmp_path, 1).mkdir()
    assert node_count_change(tmp_path, 1, 1) is None
    said = node_count_change(tmp_path, 1, 3)
    assert said and "from 1 to 3 node(s)" in said and "fresh storage" in said and str(tmp_path / "kafka") in said
    storage_dir(tmp_path, 3).mkdir()
    back = node_count_change(tmp_path, 3, 1)
    assert back and "the storage it had with 1" in back and "3-node storage stays in" in back
