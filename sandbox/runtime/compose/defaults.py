"""The images the compose files name by default (their own, both the config and the image builds read)."""

# What compose/docker-compose*.yml uses when a variable is unset (keep in step).
DEFAULT_IMAGES = {
    "ZOOKEEPER_IMAGE": "confluentinc/cp-zookeeper:7.7.1",
    "KAFKA_IMAGE": "confluentinc/cp-kafka:7.7.1",
    "KAFKA_UI_IMAGE": "ghcr.io/kafbat/kafka-ui:v1.5.0",
    "REDIS_IMAGE": "redis:7.2-alpine",
    "SANDBOX_IMAGE": "laddr-sandbox/sandbox:latest",
    "SANDBOX_BASE_IMAGE": "python:3.11-slim",
}
