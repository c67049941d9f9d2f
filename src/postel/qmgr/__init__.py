"""qmgr - the queue manager: sched.py (sans-IO scheduler), service.py (the daemon)."""
