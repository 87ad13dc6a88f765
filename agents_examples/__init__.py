"""The five example agents: deterministic, no API keys, fast."""
