"""smtp - the Postel SMTP+LMTP delivery agent (see postel.smtp.service)."""
