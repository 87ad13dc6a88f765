"""The Kafka backend: a topic per agent, one responses topic, a compacted registry.

client.py (the one module that imports aiokafka) · bus.py (KafkaBus) ·
consumer.py (the worker's loop) · offsets.py (delivery counts and what to
commit, pure) · inspect.py (stats, tap, dead letters, drain). This file
imports nothing: aiokafka is loaded only when the Kafka backend is used.
"""
