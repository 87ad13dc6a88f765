"""laddr-sandbox: run a Laddr multi-agent stack on Redis or Kafka, on one machine."""

__version__ = "0.1.0"
