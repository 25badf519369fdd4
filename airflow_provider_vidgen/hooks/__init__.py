"""Vidgen hooks."""
