"""Customers: identities across channels, CRM data (orders, invoices), value classification."""
