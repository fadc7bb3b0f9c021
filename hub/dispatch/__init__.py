"""Dispatch: who gets which conversation. ``core`` decides (pure), ``service`` acts (I/O)."""
