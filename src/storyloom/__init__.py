"""Storyloom: the operations layer for AI fiction pipelines."""

__version__ = "0.1.0"
