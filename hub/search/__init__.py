"""Full-text search of messages, subjects and customers (issue 18)."""
