"""Dedup steps: exact (normalised hash) and near-duplicate (MinHash-LSH)."""
