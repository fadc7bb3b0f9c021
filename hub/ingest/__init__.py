"""Storing inbound messages: customer and rules first, then one batched transaction.

``customer`` (who the sender is, foreseen and then made so), ``plan`` (the pure planner:
envelope, stored state, customer and decision in, what to write and publish out), ``rows`` (the
plans as table rows), ``stages`` (the shell that runs them in order).
"""
