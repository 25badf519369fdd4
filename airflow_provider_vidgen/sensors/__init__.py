"""Vidgen sensors."""
