"""Email: IMAP with IDLE and an optional SMTP server in, an SMTP relay out, threaded replies."""

from connectors.email.connector import EmailConnector

__all__ = ["EmailConnector"]
