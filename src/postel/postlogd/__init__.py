"""postlogd - Postel logging server (see postel.postlogd.service)."""
