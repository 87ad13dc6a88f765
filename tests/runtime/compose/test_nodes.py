"""How the compose runtime folds the cluster's nodes into the service `kafka` (pure naming, no engine)."""

from sandbox.runtime.compose.nodes import members, node_index, nodes_of_file, shown_service


def test_the_nodes_are_shown_as_kafka_and_numbered_by_node_id() -> None:
    assert [node_index(s) for s in ("kafka", "kafka-2", "kafka-3")] == [1, 2, 3]
    assert node_index("kafka-init") is None and node_index("kafka-ui") is None and node_index("api") is None
    assert {shown_service(s) for s in ("kafka", "kafka-2", "kafka-3")} == {"kafka"}
    assert shown_service("kafka-init") == "kafka-init" and shown_service("researcher_worker") == "researcher_worker"
    assert members("kafka") == ["kafka", "kafka-2", "kafka-3"] and members("redis") == ["redis"]


def test_the_backend_file_says_how_many_nodes_run() -> None:
    assert nodes_of_file(["docker-compose.yml", "docker-compose.kraft3.yml"]) == 3
    assert nodes_of_file(["docker-compose.yml", "docker-compose.kraft.yml"]) == 1
    assert nodes_of_file(["docker-compose.yml", "docker-compose.kafka.yml"]) == 1
    assert nodes_of_file(["docker-compose.yml", "docker-compose.redis.yml"]) == 0
