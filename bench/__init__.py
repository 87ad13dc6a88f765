"""Benchmarks of laddr-sandbox against real brokers, printed as tables: `python -m bench --help`."""
