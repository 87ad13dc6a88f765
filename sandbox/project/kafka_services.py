"""The services and settings the guide adds for Kafka, in one place.

`migrate kafka` writes them into the project's docker-compose.yml and
`kafka_override()` puts them in an override file; both take them from here. They
mirror the sandbox's own compose/docker-compose.kafka.yml (listeners, image
variables, healthchecks), so the images `scripts/setup-docker.sh` builds locally
(ZOOKEEPER_IMAGE, KAFKA_IMAGE) run them too.
"""

from __future__ import annotations

from collections.abc import Iterable

from .yamlio import load_fragment

KAFKA_BOOTSTRAP = "kafka:9092"
REDIS_URL = "redis://redis:6379/0"
KAFKA_UI_IMAGE = "ghcr.io/kafbat/kafka-ui:v1.5.0"
# Services the migration adds, in the order it adds them.
KAFKA_SERVICE_NAMES = ("zookeeper", "kafka", "kafka-init", "kafka-ui")
# What every app service (api, <agent>_worker) waits for on Kafka.
KAFKA_DEPENDS = {"kafka": "service_healthy", "kafka-init": "service_completed_successfully"}

_SERVICES = """\
zookeeper:
  image: ${ZOOKEEPER_IMAGE:-confluentinc/cp-zookeeper:7.7.1}
  restart: unless-stopped
  environment:
    ZOOKEEPER_CLIENT_PORT: 2181
    ZOOKEEPER_TICK_TIME: 2000
    KAFKA_HEAP_OPTS: -Xmx256m -Xms128m
  healthcheck:
    test: ["CMD", "bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/2181 && echo srvr >&3 && grep -q Mode <&3"]
    interval: 5s
    timeout: 5s
    retries: 12
kafka:
  image: ${KAFKA_IMAGE:-confluentinc/cp-kafka:7.7.1}
  restart: unless-stopped
  depends_on:
    zookeeper:
      condition: service_healthy
  ports: ["127.0.0.1:${KAFKA_HOST_PORT:-19092}:19092"]
  environment:
    KAFKA_BROKER_ID: 1
    KAFKA_ZOOKEEPER_CONNECT: zookeeper:2181
    KAFKA_LISTENERS: PLAINTEXT://0.0.0.0:9092,BROKER://0.0.0.0:29092,HOST://0.0.0.0:19092
    KAFKA_ADVERTISED_LISTENERS: PLAINTEXT://kafka:9092,BROKER://kafka:29092,HOST://127.0.0.1:${KAFKA_HOST_PORT:-19092}
    KAFKA_LISTENER_SECURITY_PROTOCOL_MAP: PLAINTEXT:PLAINTEXT,BROKER:PLAINTEXT,HOST:PLAINTEXT
    KAFKA_INTER_BROKER_LISTENER_NAME: BROKER
    KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR: 1
    KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR: 1
    KAFKA_TRANSACTION_STATE_LOG_MIN_ISR: 1
    KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS: 0
    KAFKA_NUM_PARTITIONS: ${KAFKA_PARTITIONS:-6}
    KAFKA_JMX_PORT: 9101
    KAFKA_JMX_HOSTNAME: kafka
    KAFKA_HEAP_OPTS: -Xmx512m -Xms256m
  healthcheck:
    test: ["CMD", "kafka-topics", "--bootstrap-server", "localhost:9092", "--list"]
    interval: 10s
    timeout: 20s
    retries: 12
    start_period: 20s
kafka-init:
  image: ${KAFKA_IMAGE:-confluentinc/cp-kafka:7.7.1}
  depends_on:
    kafka:
      condition: service_healthy
  entrypoint: ["bash", "-c"]
  command:
  - |
    pids=()
    for t in @TOPICS@; do
      kafka-topics --bootstrap-server kafka:9092 --create --if-not-exists --topic "$$t" \\
        --partitions ${KAFKA_PARTITIONS:-6} --replication-factor 1 & pids+=($$!)
    done
    for p in "$${pids[@]}"; do wait "$$p" || exit 1; done
    kafka-topics --bootstrap-server kafka:9092 --list
kafka-ui:
  image: ${KAFKA_UI_IMAGE:-@KAFKA_UI_IMAGE@}
  restart: unless-stopped
  depends_on:
    kafka:
      condition: service_healthy
  ports: ["127.0.0.1:${KAFKA_UI_HOST_PORT:-8080}:8080"]
  environment:
    KAFKA_CLUSTERS_0_NAME: laddr
    KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS: kafka:9092
    KAFKA_CLUSTERS_0_METRICS_PORT: 9101
    DYNAMIC_CONFIG_ENABLED: "false"
  healthcheck:
    test: ["CMD-SHELL", "wget -qO- http://127.0.0.1:8080/actuator/health | grep -q UP"]
    interval: 10s
    timeout: 5s
    retries: 12
    start_period: 30s
"""

# What `laddr init` writes for Redis; the rollback adds it back if it is gone.
_REDIS = """\
redis:
  image: redis:7-alpine
  ports:
  - 6379:6379
  healthcheck:
    test:
    - CMD
    - redis-cli
    - ping
    interval: 5s
    timeout: 5s
    retries: 5
"""


def topics(agents: Iterable[str]) -> list[str]:
    """The guide's topics: one task topic per agent, and the responses."""
    return [*(f"laddr.tasks.{a}" for a in agents), "laddr.responses"]


def kafka_services(agents: Iterable[str], *, ui_profile: str | None = None):
    """zookeeper, kafka, kafka-init (the project's topics) and kafka-ui, as round-trip YAML nodes.

    `ui_profile`: put kafka-ui under this Compose profile (off unless asked for),
    for engines that cannot pull its image.
    """
    text = (_SERVICES.replace("@TOPICS@", " ".join(topics(agents)))
            .replace("@KAFKA_UI_IMAGE@", KAFKA_UI_IMAGE))
    services = load_fragment(text)
    if ui_profile:
        services["kafka-ui"].insert(1, "profiles", load_fragment(f"[{ui_profile}]"))
    return services


def redis_service():
    return load_fragment(_REDIS)["redis"]


def app_environment(backend: str) -> dict[str, str]:
    """What the api and every worker get, on top of the project's .env."""
    if backend == "kafka":
        return {"QUEUE_BACKEND": "kafka", "KAFKA_BOOTSTRAP": KAFKA_BOOTSTRAP}
    return {"QUEUE_BACKEND": "redis", "REDIS_URL": REDIS_URL}


def app_depends(backend: str) -> dict[str, str]:
    return dict(KAFKA_DEPENDS) if backend == "kafka" else {"redis": "service_healthy"}
