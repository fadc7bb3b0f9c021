"""Fax channel: Sinch, Telnyx or a fax-to-email gateway in; PDF out; OCR so rules can read."""

from connectors.fax.connector import FaxConnector

__all__ = ["FaxConnector"]
