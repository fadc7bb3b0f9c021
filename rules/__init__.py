"""The rules engine: turns an envelope and its customer into a routing decision.

Pure: no I/O. ``load_rules`` compiles a file once, ``evaluate`` decides per message (docs/rules.md).
"""
