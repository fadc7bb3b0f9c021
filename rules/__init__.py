"""The rules engine: turns an envelope and its customer into a routing decision.

Pure: no I/O. Until the YAML rules engine lands, :func:`rules.decision.passthrough` decides.
"""
