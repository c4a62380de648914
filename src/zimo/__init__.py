"""Zimo (子模): small private sub-models beside big ones."""

__version__ = "0.1.0"
