"""Postel - a mail transfer agent in Python with the architecture of Postfix."""

__version__ = "0.1.0"
