"""anvil - client connection and rate limiting service (see service.py)."""
