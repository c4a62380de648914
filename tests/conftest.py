"""Shared fixtures (helpers live in project_fixtures.py so test modules can import them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from project_fixtures import make_tiny_project


@pytest.fixture
def tiny_project(tmp_path: Path) -> Path:
    """A small labelled project on real SMS rows (60 ham, 30 spam)."""
    return make_tiny_project(tmp_path)


@pytest.fixture(scope="session")
def trained_project(tmp_path_factory) -> Path:
    """A tiny project built end to end once per test session (train: a few steps)."""
    from zimo.build import build

    root = make_tiny_project(tmp_path_factory.mktemp("trained"))
    build(root)
    return root
