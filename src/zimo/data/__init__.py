"""Data: ingest tables, curate corpora (readers, steps, engines, report), split.

Curation entry points: :func:`zimo.data.pipeline.run_steps` (records in memory) and
:func:`zimo.data.curate.curate_path` (a folder of files). See ``API.md`` in this folder.
"""
