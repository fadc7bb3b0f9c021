"""Web chat connector: customer websocket ``/ws/chat``, ``/chat/widget.js`` and a demo page."""

from connectors.webchat.connector import WebChatConnector
from connectors.webchat.settings import WebChatSettings

__all__ = ["WebChatConnector", "WebChatSettings"]
