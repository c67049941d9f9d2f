"""error - the error(8)/retry(8) delivery agent; see service.py."""
