"""Vidgen triggers."""
