"""Readers: files of many formats to records, with bad input quarantined with a reason."""

from zimo.data.readers.base import is_quarantined, quarantine
from zimo.data.readers.files import iter_files, read_file, read_path

__all__ = ["is_quarantined", "iter_files", "quarantine", "read_file", "read_path"]
