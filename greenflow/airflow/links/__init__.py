"""Operator extra links: from a task instance to its entries in the greenflow ledger page."""
