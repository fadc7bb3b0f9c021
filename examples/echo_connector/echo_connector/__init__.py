"""Echo: an example channel connector for channelhub (see README.md and docs/connectors.md)."""

from echo_connector.connector import EchoConnector
from echo_connector.settings import EchoSettings

__all__ = ["EchoConnector", "EchoSettings"]
