"""Formatters: curation steps that change text (one small class per module)."""
