"""discard - the discard(8) delivery agent; see service.py."""
