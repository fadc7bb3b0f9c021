"""Persistence: SQLAlchemy Core tables, the async store and the content-addressed blob store."""
