"""Perun state channels for Ethereum."""
