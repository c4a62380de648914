"""Routes of the dashboard: HTML shells under ``/ui`` and JSON under ``/ui/api``.

Data comes from the same places the CLI reads: each project's workspace (artifacts, manifests,
the SQLite run registry), the server's request log and key store. When API keys are configured
the JSON endpoints need an admin key (``Authorization: Bearer …``); the HTML shells hold no data.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape

from zimo.web import data as D

HERE = Path(__file__).parent
_env = Environment(
    loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"])
)
PAGES = [
    ("projects", "Projects"),
    ("datasets", "Datasets"),
    ("runs", "Runs"),
    ("models", "Models"),
    ("gateway", "Gateway"),
    ("keys", "Keys"),
]

# Builds started from the UI, by project name: {"thread", "error", "started"}.
_BUILDS: dict[str, dict[str, Any]] = {}
_BUILD_LOCK = threading.Lock()


def _state(request: Request):
    return getattr(request.app.state, "zimo", None)


def _require_admin(request: Request) -> None:
    """Admin key needed when the server has keys; open on a key-less localhost server."""
    st = _state(request)
    if st is None or not st.auth_required():
        # Key-less servers are bound to loopback; should one still be reached from another
        # machine (a proxy, a tunnel), its admin API must not answer unauthenticated.
        from zimo.serve.service import is_loopback

        if not is_loopback(request.client.host if request.client else None):
            raise HTTPException(403, "without API keys the dashboard answers localhost only")
        return
    auth = request.headers.get("authorization", "")
    token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
    key, _ = st.keys.verify(token) if token else (None, "")
    if key is None or not key.active:
        raise HTTPException(401, "send an admin API key: Authorization: Bearer zk-…")
    if not key.admin:
        raise HTTPException(403, f"API key {key.id} is not an admin key")


def _projects(request: Request) -> list[Path]:
    st = _state(request)
    reg = getattr(st, "registry", None) if st else None
    roots = list(getattr(reg, "projects", []) or [])
    return roots + list(getattr(request.app.state, "ui_projects", []))


def _project(request: Request, name: str) -> Path:
    for root in _projects(request):
        if D.project_name(root) == name:
            return root
    raise HTTPException(404, f"no project named {name!r} on this server")


def _page(name: str, request: Request, **ctx: Any) -> HTMLResponse:
    tpl = _env.get_template(f"{name}.html")
    st = _state(request)
    return HTMLResponse(
        tpl.render(
            page=name,
            pages=PAGES,
            auth=bool(st and st.auth_required()),
            projects=[D.project_name(p) for p in _projects(request)],
            **ctx,
        )
    )


router = APIRouter()


def mount_ui(app: FastAPI, projects: list[str | Path] | None = None) -> None:
    """Add the dashboard to a FastAPI app (``zimo serve`` calls this)."""
    app.state.ui_projects = [Path(p).resolve() for p in projects or []]
    app.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="ui-static")
    app.include_router(router)


@router.get("/ui", include_in_schema=False)
async def ui_root():
    return RedirectResponse("/ui/projects")


def _page_route(slug: str):
    async def page(request: Request):
        return _page(slug, request)

    return page


for _slug, _title in PAGES:
    router.get(f"/ui/{_slug}", response_class=HTMLResponse, include_in_schema=False)(
        _page_route(_slug)
    )


@router.get("/ui/projects/{name}/report", include_in_schema=False)
async def report(name: str, request: Request):
    return _report_file(D.eval_report(_project_after_auth(request, name)),
                        "no evaluation report yet: build the project first")  # fmt: skip


@router.get("/ui/projects/{name}/curate-report", include_in_schema=False)
async def curate_report(name: str, request: Request):
    return _report_file(D.curate_report(_project_after_auth(request, name)),
                        "no curate report yet")  # fmt: skip


def _project_after_auth(request: Request, name: str) -> Path:
    # Reports are static files of the workspace: the same auth as the data endpoints.
    _require_admin(request)
    return _project(request, name)


def _report_file(path: Path | None, missing: str) -> FileResponse:
    if path is None:
        raise HTTPException(404, missing)
    return FileResponse(path, media_type="text/html")


# ---------------------------------------------------------------- JSON API
@router.get("/ui/api/projects")
async def api_projects(request: Request):
    _require_admin(request)
    out = []
    for root in _projects(request):
        info = await asyncio.to_thread(D.project_summary, root)
        b = _BUILDS.get(info["name"])
        if b:
            info["ui_build"] = {
                "running": b["thread"].is_alive(),
                "error": b.get("error"),
                "started": b["started"],
            }
        out.append(info)
    return {"projects": out}


@router.post("/ui/api/projects/{name}/build", status_code=202)
async def api_build(name: str, request: Request):
    _require_admin(request)
    root = _project(request, name)
    with _BUILD_LOCK:
        cur = _BUILDS.get(name)
        if cur and cur["thread"].is_alive():
            return {"status": "already running"}
        entry: dict[str, Any] = {"started": time.time(), "error": None}

        def run() -> None:
            from zimo.build import build

            try:
                build(root)
            except BaseException as e:  # noqa: BLE001 - shown in the UI
                entry["error"] = getattr(e, "message", None) or str(e) or type(e).__name__

        entry["thread"] = threading.Thread(target=run, name=f"ui-build-{name}", daemon=True)
        _BUILDS[name] = entry
        entry["thread"].start()
    return {"status": "started"}


@router.get("/ui/api/projects/{name}/dataset")
async def api_dataset(name: str, request: Request):
    _require_admin(request)
    return await asyncio.to_thread(D.dataset_summary, _project(request, name))


@router.get("/ui/api/projects/{name}/samples")
async def api_samples(
    name: str, request: Request, q: str = "", split: str = "train", limit: int = 50
):
    _require_admin(request)
    root = _project(request, name)
    return await asyncio.to_thread(D.samples, root, split, q, max(1, min(limit, 500)))


@router.get("/ui/api/projects/{name}/runs")
async def api_runs(name: str, request: Request):
    _require_admin(request)
    return await asyncio.to_thread(D.runs, _project(request, name))


@router.get("/ui/api/projects/{name}/train/stream")
async def api_train_stream(name: str, request: Request):
    """Server-sent events: one `data:` line per training-log row, live while training."""
    _require_admin(request)
    root = _project(request, name)

    async def events():
        sent = 0
        idle = 0.0
        while idle < 600:
            if await request.is_disconnected():
                return
            rows = await asyncio.to_thread(D.train_log, root)
            if len(rows) < sent:  # a new run started: begin again
                sent = 0
            if len(rows) > sent:
                for row in rows[sent:]:
                    yield f"data: {json.dumps(row)}\n\n"
                sent = len(rows)
                idle = 0.0
            else:
                yield ": keep-alive\n\n"
            await asyncio.sleep(1.0)
            idle += 1.0

    return StreamingResponse(events(), media_type="text/event-stream")


@router.get("/ui/api/models")
async def api_models(request: Request):
    _require_admin(request)
    st = _state(request)
    return await asyncio.to_thread(D.models_summary, st, _projects(request))


@router.get("/ui/api/gateway")
async def api_gateway(
    request: Request, hours: float = Query(24.0, gt=0, le=24 * 366, allow_inf_nan=False)
):
    _require_admin(request)
    return await asyncio.to_thread(D.gateway_summary, _state(request), hours)


@router.get("/ui/api/cascade")
async def api_cascade(request: Request, hours: float = 24.0):
    _require_admin(request)
    if not math.isfinite(hours) or not 0 < hours <= 24 * 366:
        raise HTTPException(400, "hours must be a number of hours between 0 and 8784")
    st = _state(request)
    return await asyncio.to_thread(D.cascade_summary, st, _projects(request), hours)


@router.get("/ui/api/keys")
async def api_keys(request: Request):
    from zimo.serve.keys import key_row

    _require_admin(request)
    st = _state(request)
    return {"keys": [key_row(st.keys, k) for k in st.keys.list()] if st and st.keys else []}


@router.post("/ui/api/keys", status_code=201)
async def api_key_create(request: Request):
    _require_admin(request)
    st = _state(request)
    if st is None or st.keys is None:
        raise HTTPException(409, "this server has no key store")
    from zimo.serve.schemas import KeyCreateRequest, parse_json, validate

    body: KeyCreateRequest = validate(KeyCreateRequest, parse_json(await request.body()))
    try:
        secret, rec = st.keys.create(
            body.name,
            models=body.models or None,
            rate_per_minute=body.rate_per_minute,
            admin=body.admin,
            big_budget_usd=body.big_budget_usd,
            budget_period=body.budget_period,
        )
    except (ValueError, TypeError) as e:
        raise HTTPException(400, str(e)) from None
    return {"key": secret, "record": rec.public()}


@router.delete("/ui/api/keys/{key_id}")
async def api_key_revoke(key_id: str, request: Request):
    _require_admin(request)
    st = _state(request)
    if st is None or st.keys is None or not st.keys.revoke(key_id):
        raise HTTPException(404, f"no active key {key_id!r}")
    return {"revoked": key_id}
