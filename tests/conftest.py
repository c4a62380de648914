"""Shared fixtures (helpers live in project_fixtures.py so test modules can import them).

Under pytest-xdist (``make test`` runs ``-n 2``) every worker is its own process: each gets an
equal share of the cores (``ZIMO_THREADS``, read by ``zimo.hw.cores`` for torch and every
``zimo`` subprocess a test starts), so two workers do not run a thread per core each and
spin-wait on each other; and something built "once per session" is built once per *run*, in a
folder the workers share (:func:`built_once`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from project_fixtures import make_tiny_project


def _share_cores_between_workers() -> None:
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    if workers <= 1 or "ZIMO_THREADS" in os.environ:
        return
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    share = str(max(1, n // workers))
    # Set before any test imports torch, so its OpenMP pool starts at this size too.
    os.environ["ZIMO_THREADS"] = share
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, share)


_share_cores_between_workers()

# The same weights on every CPU kind: without fast bf16 Zimo runs label scoring on an int8 base
# (zimo.infer.fastpath), whose probabilities differ from fp32's by up to a few tenths on an
# untuned base, and many tests compare an engine with an fp32 forward at tight tolerances. The
# int8 path has its own tests (test_infer_fastpath.py), which set ZIMO_INT8 themselves.
os.environ.setdefault("ZIMO_INT8", "0")


def built_once(tmp_path_factory, name: str, make: Callable[[Path], None]) -> Path:
    """``make(folder)`` once per test run, in a folder every xdist worker sees; later callers
    (this worker or another) wait on a file lock and get the finished folder.

    pytest-xdist's recipe: the workers' base temp dirs share a parent. A build that failed
    half-way leaves no ``.done`` marker, so the next caller starts it over.
    """
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    folder = base / f"built-{name}"
    with FileLock(str(folder) + ".lock"):
        if not (folder / ".done").is_file():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            make(folder)
            (folder / ".done").touch()
    return folder


@pytest.fixture
def tiny_project(tmp_path: Path) -> Path:
    """A small labelled project on real SMS rows (60 ham, 30 spam)."""
    return make_tiny_project(tmp_path)


@pytest.fixture(scope="session")
def trained_project(tmp_path_factory) -> Path:
    """A tiny project built end to end once per test run (train: a few steps); read-only for
    the tests that use it (workers share it)."""
    from zimo.build import build

    def make(root: Path) -> None:
        make_tiny_project(root)
        build(root)

    return built_once(tmp_path_factory, "trained", make)
