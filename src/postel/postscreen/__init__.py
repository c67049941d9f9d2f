"""postscreen - zombie blocker in front of smtpd (see service.py)."""
