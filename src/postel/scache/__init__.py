"""scache - Postel shared connection cache (see postel.scache.service)."""
