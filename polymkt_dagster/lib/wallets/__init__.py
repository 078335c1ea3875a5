"""Wallet tracking: the positions ledger, P&L snapshots, alerts, rollups, watchlists."""
