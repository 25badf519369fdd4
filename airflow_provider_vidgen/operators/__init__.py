"""Vidgen operators."""
