"""Filters: curation steps that keep or drop a record with a reason."""
