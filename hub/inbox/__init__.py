"""Inbox views: the conversations an agent works from, listed by the hub (issue 18)."""
