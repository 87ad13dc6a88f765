"""The Redis backend: streams with consumer groups, responses by SETEX + PUBLISH.

client.py (connection, pipelining, names) · bus.py (RedisBus) · consumer.py
(the worker's loop) · inspect.py (stats, tap, dead letters, drain). Import
the module you need; this file imports nothing, so a lighter one stays light.
"""
