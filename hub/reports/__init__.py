"""Reports and exports for team leads: figures from the audit log, CSV that opens safely."""
