"""dnsblog - DNS allow/denylist logger for postscreen (see service.py)."""
