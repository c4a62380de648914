"""Serve the analytic sub-models (classical text, tables) of the projects beside the LMs.

They need no model engine: each is a small in-process predictor. A classical text sub-model
answers ``/v1/chat/completions`` like a LoRA label sub-model (the label as the content,
``label_probs`` in the ``zimo`` field). A table sub-model answers the Open Inference Protocol
(KServe v2: ``GET /v2/models/{name}``, ``POST /v2/models/{name}/infer``), which KServe, Triton
and Seldon clients speak, and a plain form, ``POST /v1/predict {"model", "rows": [...]}``.

Names are those of :mod:`zimo.serve.project_models`. A watcher reloads a sub-model when a newer train artifact appears (no restart).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from zimo.serve.errors import APIError, model_not_found
from zimo.serve.project_models import served_names, train_artifacts
from zimo.submodel_meta import SubModelMeta

log = logging.getLogger("zimo.serve")
MAX_ROWS = 100_000


@dataclass
class Entry:
    name: str
    kind: str  # classical | tabular | image
    folder: Path
    predictor: Any
    project: str


class AnalyticModels:
    """Names -> loaded analytic predictors, kept fresh from project folders; thread-safe."""

    def __init__(self, projects: list[str | Path] = ()):
        self.projects = [Path(p) for p in projects]
        self.entries: dict[str, Entry] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh(self) -> list[str]:
        """Load new or retrained analytic sub-models; returns the names that changed."""
        from zimo.kinds import kind_of, resolve

        changed = []
        for project in self.projects:
            arts = train_artifacts(project)
            for stage, folder in arts:
                try:
                    meta = SubModelMeta.read(folder)
                    kind = kind_of(meta.method)
                except (OSError, ValueError, KeyError) as e:
                    log.warning("skipping %s: %s", folder, e)
                    continue
                if kind.load is None:
                    continue  # a language model: the engine's registry serves it
                names = served_names(meta.name or project.name, stage, meta.submodel,
                                     len(arts), always_alias=True)  # fmt: skip
                with self._lock:
                    current = self.entries.get(names[0])
                if current is not None and current.folder == folder:
                    continue
                try:
                    predictor = resolve(kind.load)(folder)
                except Exception as e:  # one broken artifact must not stop the others
                    log.warning("cannot serve %s from %s: %s", names[0], folder, e)
                    continue
                with self._lock:
                    for n in names:
                        self.entries[n] = Entry(n, kind.name, folder, predictor, str(project))
                changed += names
                log.info("serving %s (%s, %s)", ", ".join(names), kind.name, folder.name)
        return changed

    def get(self, name: str) -> Entry | None:
        with self._lock:
            return self.entries.get(name)

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self.entries)

    def start_watching(self, every_s: float | None) -> None:
        if not every_s or not self.projects or self._thread is not None:
            return

        def loop() -> None:
            while not self._stop.wait(every_s):
                try:
                    self.refresh()
                except Exception as e:  # keep watching after a transient error
                    log.warning("analytic model watcher: %s", e)

        self._thread = threading.Thread(target=loop, name="zimo-analytic-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()


# ---------------------------------------------------------------------------- chat handlers
def _text_handler(store: AnalyticModels, name: str):
    async def handler(req, st):
        from zimo.serve.cost import local_cost
        from zimo.serve.service import Answer

        entry = store.get(name)
        if entry is None:
            raise model_not_found(name)
        text = next((m.text() for m in reversed(req.messages) if m.role == "user"), None)
        if not text:
            raise APIError(400, "send the text to label as a user message", param="messages")
        t0 = time.perf_counter()
        label, probs = await asyncio.to_thread(entry.predictor.label, text)
        compute = time.perf_counter() - t0
        return Answer(
            text=label, finish_reason="stop", prompt_tokens=0, completion_tokens=0,
            answered_by=name, cost=local_cost(st.settings.cost, name, compute, 0, 0),
            label_probs=probs, compute_s=compute, queue_s=0.0, batch_size=1,
        )  # fmt: skip

    return handler


def _table_chat_handler(name: str):
    async def handler(req, st):
        raise APIError(
            400,
            f"model `{name}` is a table model: send rows to POST /v2/models/{name}/infer "
            '(KServe v2) or POST /v1/predict {"model": ..., "rows": [...]}',
            param="model",
            code="wrong_endpoint",
        )

    return handler


def install_analytic(state, projects: list[str | Path]) -> AnalyticModels:
    """Load the projects' analytic sub-models and register their chat handlers."""
    store = AnalyticModels(projects)
    state.analytic = store

    mine: dict[str, Any] = {}

    def register(names: list[str]) -> None:
        for n in names:
            entry = store.get(n)
            # A name another handler took (a cascade serves its project's name) stays theirs;
            # handlers look their predictor up per request, so a retrained one is used anyway.
            if entry is None or (n in state.virtual and state.virtual[n] is not mine.get(n)):
                continue
            if entry.kind == "image":
                from zimo.serve.image import image_chat_handler

                handler = image_chat_handler(store, n)
            else:
                handler = (
                    _text_handler(store, n) if entry.kind == "classical" else _table_chat_handler(n)
                )
            state.add_virtual_model(n, handler)

    register(store.refresh())
    original = store.refresh

    def refresh_and_register() -> list[str]:
        changed = original()
        register(changed)
        return changed

    store.refresh = refresh_and_register  # type: ignore[method-assign]
    store.start_watching(state.settings.watch_s)
    return store


# ---------------------------------------------------------------------------- HTTP
router = APIRouter()


def _table(request: Request, name: str):
    st = request.app.state.zimo
    key = st.authenticate(request.headers.get("authorization"))
    store = getattr(st, "analytic", None)
    entry = store.get(name) if store is not None else None
    if entry is None or entry.kind != "tabular":
        if entry is not None:
            raise APIError(400, f"model `{name}` is not a table model; use /v1/chat/completions",
                           param="model")  # fmt: skip
        raise model_not_found(name)
    if key is not None and not key.allows(name):
        raise APIError(403, f"API key {key.id} is not allowed to use model `{name}`",
                       code="model_not_allowed", param="model")  # fmt: skip
    return st, key, entry


async def _json_body(request: Request) -> Any:
    from zimo.serve.schemas import parse_json

    return parse_json(await request.body())


_V2_TYPES = {"numeric": "FP64", "categorical": "BYTES", "datetime": "BYTES", "text": "BYTES"}


@router.get("/v2/health/live")
@router.get("/v2/health/ready")
async def v2_health():
    return {"live": True, "ready": True}


@router.get("/v2/models/{name}")
async def v2_metadata(name: str, request: Request):
    _, _, entry = _table(request, name)
    p = entry.predictor
    outputs = [{"name": "predictions", "datatype": "FP64" if p.objective == "regression" else "BYTES",
                "shape": [-1]}]  # fmt: skip
    if p.objective == "regression" and p.lower is not None:
        outputs += [{"name": "lower", "datatype": "FP64", "shape": [-1]},
                    {"name": "upper", "datatype": "FP64", "shape": [-1]}]  # fmt: skip
    elif p.objective != "regression":
        outputs.append(
            {"name": "probabilities", "datatype": "FP64", "shape": [-1, len(p.plan.classes)]}
        )
    return {
        "name": name,
        "versions": [entry.folder.name],
        "platform": "lightgbm",
        "inputs": [
            {"name": c, "datatype": _V2_TYPES[k], "shape": [-1]} for c, k in p.input_kinds().items()
        ],  # fmt: skip
        "outputs": outputs,
        "parameters": {
            "objective": p.objective,
            "target": p.plan.target,
            "classes": p.plan.classes,
        },  # fmt: skip
    }


@router.get("/v2/models/{name}/ready")
async def v2_ready(name: str, request: Request):
    _table(request, name)
    return {"name": name, "ready": True}


def _rows_from_v2(body: Any, inputs: list[str]) -> list[dict[str, Any]]:
    """Rows from a v2 request: one tensor per column (``{"name": column, "data": [...]}``,
    as MLServer's pandas codec sends), or one 2-D tensor in the model's input order."""
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list) or not body["inputs"]:
        raise APIError(400, 'the body needs "inputs": [{"name", "shape", "datatype", "data"}]',
                       param="inputs")  # fmt: skip
    tensors = body["inputs"]
    for i, t in enumerate(tensors):
        if not isinstance(t, dict) or not isinstance(t.get("data"), list):
            raise APIError(400, f"inputs[{i}] needs a name and a data list", param=f"inputs[{i}]")
    if len(tensors) == 1 and tensors[0].get("name") not in inputs:
        t = tensors[0]
        shape = t.get("shape") or []
        data = _flat(t["data"])
        if len(shape) != 2 or shape[1] != len(inputs) or len(data) != shape[0] * shape[1]:
            raise APIError(400, f"a single input tensor must have shape [rows, {len(inputs)}] "
                           f"with the columns in this order: {', '.join(inputs)}",
                           param="inputs[0].shape")  # fmt: skip
        w = len(inputs)
        return [dict(zip(inputs, data[r * w : (r + 1) * w], strict=True)) for r in range(shape[0])]
    cols: dict[str, list] = {}
    for i, t in enumerate(tensors):
        name = t.get("name")
        if not isinstance(name, str):
            raise APIError(
                400, f"inputs[{i}].name must be a column name", param=f"inputs[{i}].name"
            )
        cols[name] = _flat(t["data"])
    lengths = {len(v) for v in cols.values()}
    if len(lengths) != 1:
        raise APIError(400, "every input tensor must hold the same number of rows", param="inputs")
    n = lengths.pop()
    return [{c: v[r] for c, v in cols.items()} for r in range(n)]


def _flat(data: list) -> list:
    if data and isinstance(data[0], list):
        return [x for row in data for x in (row if isinstance(row, list) else [row])]
    return data


def _predict(st, key, entry: Entry, rows: list[dict[str, Any]], endpoint: str) -> dict[str, Any]:
    from zimo.logs.requests import new_id
    from zimo.tabular.features import RowError

    t0 = time.perf_counter()
    status, error, body = 200, None, None
    try:
        if len(rows) > MAX_ROWS:
            raise APIError(413, f"at most {MAX_ROWS} rows per request; send {len(rows)} in parts",
                           param="rows")  # fmt: skip
        try:
            body = entry.predictor.answer_rows(rows)
        except RowError as e:
            raise APIError(400, e.message, param=e.param) from None
        return body
    except APIError as e:
        status, error = e.status, e.message
        raise
    finally:
        latency = time.perf_counter() - t0
        st.metrics.observe(endpoint, entry.name, status, latency)
        st.log_request(
            id=new_id(), key_id=key.id if key else None, endpoint=endpoint, model=entry.name,
            answered_by=entry.name if status == 200 else None, escalated=False,
            route_score=None, messages=None,
            prompt=json.dumps(rows[:20], default=str, ensure_ascii=False)[:4000],
            params={"rows": len(rows)}, response=json.dumps(body)[:4000] if body else None,
            prompt_tokens=None, completion_tokens=None, latency_ms=latency * 1000,
            cost=None, status=status, error=error, stream=False,
        )  # fmt: skip


@router.post("/v2/models/{name}/infer")
async def v2_infer(name: str, request: Request):
    st, key, entry = _table(request, name)
    body = await _json_body(request)
    rows = _rows_from_v2(body, entry.predictor.inputs)
    res = await asyncio.to_thread(_predict, st, key, entry, rows, "infer")
    objective = entry.predictor.objective
    outputs = [{"name": "predictions", "shape": [len(rows)],
                "datatype": "FP64" if objective == "regression" else "BYTES",
                "data": res["predictions"]}]  # fmt: skip
    if "intervals" in res:
        outputs += [
            {"name": "lower", "shape": [len(rows)], "datatype": "FP64",
             "data": [lo for lo, _ in res["intervals"]]},
            {"name": "upper", "shape": [len(rows)], "datatype": "FP64",
             "data": [hi for _, hi in res["intervals"]]},
        ]  # fmt: skip
    if "probabilities" in res:
        classes = entry.predictor.plan.classes
        outputs.append({"name": "probabilities", "shape": [len(rows), len(classes)],
                        "datatype": "FP64",
                        "data": [[p[c] for c in classes] for p in res["probabilities"]]})  # fmt: skip
    out: dict[str, Any] = {
        "model_name": name,
        "model_version": entry.folder.name,
        "outputs": outputs,
    }
    if isinstance(body, dict) and isinstance(body.get("id"), str):
        out["id"] = body["id"]
    if res.get("unseen_categories"):
        out["parameters"] = {"unseen_categories": res["unseen_categories"]}
    return JSONResponse(out)


@router.post("/v1/predict")
async def v1_predict(request: Request):
    body = await _json_body(request)
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        raise APIError(
            400, 'the body needs "model" (a table model\'s name) and "rows"', param="model"
        )
    st, key, entry = _table(request, body["model"])
    rows = body.get("rows")
    if not isinstance(rows, list):
        raise APIError(400, '"rows" must be a list of {column: value} objects', param="rows")
    res = await asyncio.to_thread(_predict, st, key, entry, rows, "predict")
    return JSONResponse({"object": "prediction", "model": entry.name, **res})
