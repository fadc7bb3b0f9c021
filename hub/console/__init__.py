"""The agent console: the websocket protocol, the connection registry and the page."""
