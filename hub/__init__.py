"""channelhub: the unified-messaging hub's service core."""

__version__ = "0.1.0"
