"""Aggregation: changed alerts are routed and put into their groups (ingest → route → group)."""
