"""verify - Postel address verification server (see postel.verify.service)."""
