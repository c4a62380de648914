"""LightGBM training on a Dask cluster, for tables too large to train in one process.

Uses LightGBM's own Dask interface (``lightgbm.DaskLGBMRegressor`` / ``DaskLGBMClassifier``):
every worker trains on the rows it holds and the workers build each tree together over
LightGBM's socket network (data-parallel tree learner). Rows are placed explicitly, one
contiguous slice per worker, so every worker takes part; with ``da.from_array`` the scheduler
may put all chunks on one worker, and LightGBM then trains on that worker alone.

Early stopping: LightGBM 4.7's Dask interface accepts ``eval_set`` but not early stopping.
Each worker would evaluate only its local share of the dev rows and stop on its own, and the
first worker to stop breaks the others' sockets ("Socket recv error, Connection reset by
peer", LightGBM issues #3712, #5963, #6197; reproduced here with lightgbm 4.7 / distributed
2026.8). So the number of rounds is chosen first by an ordinary single-process
``lightgbm.train`` with early stopping on the dev set, fitted on a seeded sample of the
training rows, and the Dask model then trains exactly that many rounds. A sample usually
stops a little earlier than the full data would: the round count errs on the short side.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import lightgbm
    from distributed import Client

# Rows of the single-process run that picks the number of rounds (see the module docstring).
ROUNDS_SAMPLE_ROWS = 50_000
_CLASSIFIER_OBJECTIVES = {
    "binary",
    "multiclass",
    "softmax",
    "multiclassova",
    "multiclass_ova",
    "ova",
    "ovr",
}
# Parameters the Dask estimators set themselves (threads and network per worker, the class
# count from the labels) or that must not reach the workers (early stopping, see above).
_DROP = {
    "num_threads",
    "n_jobs",
    "nthread",
    "nthreads",
    "num_class",
    "early_stopping_round",
    "early_stopping_rounds",
    "early_stopping",
    "n_iter_no_change",
    "num_boost_round",
    "num_iterations",
    "n_estimators",
}


def rounds_by_early_stopping(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_dev: np.ndarray,
    y_dev: np.ndarray,
    *,
    params: dict[str, Any],
    num_boost_round: int,
    early_stopping_rounds: int,
    categorical: list[int],
    sample_rows: int = ROUNDS_SAMPLE_ROWS,
    seed: int = 0,
) -> int:
    """Best iteration of a single-process early-stopping run on ≤ ``sample_rows`` train rows."""
    import lightgbm as lgb

    n = X_train.shape[0]
    if n > sample_rows:
        rows = np.sort(np.random.default_rng(seed).choice(n, sample_rows, replace=False))
        X_train, y_train = X_train[rows], y_train[rows]
    p = {k: v for k, v in params.items() if k not in _DROP or k == "num_class"}
    p.setdefault("verbose", -1)
    train = lgb.Dataset(X_train, y_train, categorical_feature=categorical)
    dev = lgb.Dataset(X_dev, y_dev, categorical_feature=categorical, reference=train)
    booster = lgb.train(
        p,
        train,
        num_boost_round=num_boost_round,
        valid_sets=[dev],
        callbacks=[lgb.early_stopping(early_stopping_rounds, verbose=False)],
    )
    return int(booster.best_iteration) or num_boost_round


def _row_slices_on_workers(client: Client, arrays: list[np.ndarray]) -> list[Any]:
    """Dask arrays with one contiguous row slice per worker, each slice held by its worker."""
    import dask.array as da

    workers = sorted(client.scheduler_info()["workers"])
    n = arrays[0].shape[0]
    n_parts = max(1, min(len(workers), n))
    bounds = np.linspace(0, n, n_parts + 1).astype(int)
    out = []
    for arr in arrays:
        parts = []
        for i in range(n_parts):
            piece = np.ascontiguousarray(arr[bounds[i] : bounds[i + 1]])
            fut = client.scatter(piece, workers=[workers[i]], hash=False)
            parts.append(da.from_delayed(fut, shape=piece.shape, dtype=piece.dtype))
        out.append(da.concatenate(parts, axis=0))
    return out


def _fit(
    client: Client,
    X: np.ndarray,
    y: np.ndarray,
    *,
    params: dict[str, Any],
    rounds: int,
    categorical: list[int],
) -> lightgbm.Booster:
    import lightgbm as lgb

    objective = str(params.get("objective", "regression"))
    cls = lgb.DaskLGBMClassifier if objective in _CLASSIFIER_OBJECTIVES else lgb.DaskLGBMRegressor
    kwargs = {k: v for k, v in params.items() if k not in _DROP}
    kwargs.setdefault("verbose", -1)
    dX, dy = _row_slices_on_workers(client, [X, y])
    model = cls(client=client, n_estimators=rounds, **kwargs)
    with warnings.catch_warnings():
        # The sklearn wrapper always passes n_jobs, which the Dask interface replaces by one
        # thread set per worker; its warning would fire on every build.
        warnings.filterwarnings("ignore", "Parameter n_jobs will be ignored")
        model.fit(dX, dy, categorical_feature=categorical)
    return model.booster_


def train_dask(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_dev: np.ndarray | None,
    y_dev: np.ndarray | None,
    *,
    params: dict[str, Any],
    num_boost_round: int,
    early_stopping_rounds: int,
    categorical: list[int],
    n_workers: int = 2,
    client: Client | None = None,
) -> lightgbm.Booster:
    """Train a LightGBM booster with LightGBM's Dask interface; returns ``model.booster_``.

    ``params`` are ``lightgbm.train`` parameters (``objective`` picks regressor or
    classifier; classifier labels must be the codes 0..k-1, all present in ``y_train``).
    With ``early_stopping_rounds > 0`` and a dev set, the round count comes from
    :func:`rounds_by_early_stopping` (Dask early stopping does not work, see the module
    docstring); otherwise ``num_boost_round`` rounds are trained. Without ``client`` a
    ``LocalCluster`` of ``n_workers`` single-threaded processes is started and closed here.
    """
    X = np.asarray(X_train, dtype=np.float64)
    y = np.asarray(y_train)
    if X.ndim != 2 or X.shape[0] != y.shape[0] or X.shape[0] == 0:
        raise ValueError(f"X_train {X.shape} and y_train {y.shape} do not match")
    objective = str(params.get("objective", "regression"))
    if objective in _CLASSIFIER_OBJECTIVES:
        k = int(params.get("num_class", 2 if objective == "binary" else y.max() + 1))
        if not np.array_equal(np.unique(y), np.arange(k)):
            # The Dask classifier re-encodes labels it sees; a missing code would shift the
            # booster's class columns away from the codes the caller uses.
            raise ValueError(f"classifier labels must be the codes 0..{k - 1}, all present")
    rounds = num_boost_round
    if early_stopping_rounds > 0 and X_dev is not None and y_dev is not None:
        rounds = rounds_by_early_stopping(
            X,
            y,
            np.asarray(X_dev, dtype=np.float64),
            np.asarray(y_dev),
            params=params,
            num_boost_round=num_boost_round,
            early_stopping_rounds=early_stopping_rounds,
            categorical=categorical,
        )
    if client is not None:
        return _fit(client, X, y, params=params, rounds=rounds, categorical=categorical)
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as own_client,
    ):
        return _fit(own_client, X, y, params=params, rounds=rounds, categorical=categorical)
