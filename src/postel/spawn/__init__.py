"""spawn - Postel external command spawner (see postel.spawn.service)."""
