"""smtpd"""
