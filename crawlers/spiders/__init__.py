"""Spiders: one module per source."""
