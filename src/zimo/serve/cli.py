"""CLI of the serving area: ``zimo serve``, ``zimo keys create|list|revoke``, ``zimo logs``.

``register(app)`` adds them to the main typer app; :func:`gateway_app` is the app it serves
(the API with the dashboard mounted); :func:`settings_from_projects` reads projects' configs.
"""

from __future__ import annotations

import csv
import ipaddress
import json
import sys
from pathlib import Path

import typer

from zimo.errors import ConfigError, ZimoError
from zimo.serve.config import ServeConfig


def settings_from_projects(
    projects: list[Path], overrides: dict | None = None
) -> tuple[ServeConfig, list[Path]]:
    """A :class:`ServeConfig` for serving ``projects`` (their ``serve:`` section + overrides).

    The first project with a ``serve:`` section gives the settings; the base model is the
    projects' ``train.base`` (all must share one base: the sub-models are adapters on it); with
    exactly one project, the request log goes to ``<project>/.zimo/requests.sqlite`` (where
    ``zimo synth`` distillation looks for it).
    """
    from pydantic import ValidationError

    raw: dict = {}
    bases: dict[str, str] = {}
    roots: list[Path] = []
    for p in projects:
        from zimo.config import load_project

        proj = load_project(p)
        roots.append(proj.root)
        if proj.config.serve is not None and not raw:
            # As written in zimo.yaml, so the command line's overrides merge key by key.
            raw = proj.config.serve.model_dump(exclude_unset=True)
        lm = proj.config.lm_train()
        base = lm.base if lm is not None else None
        if base:
            bases[str(base)] = proj.name
    raw = _deep_merge(raw, overrides or {})
    if bases and "base" not in (raw.get("backend") or {}):
        if len(set(bases)) > 1:
            raise ConfigError(
                f"these projects train on different bases ({', '.join(sorted(bases))}); one "
                "server shares one base",
                "serve them with separate `zimo serve` processes (other ports)",
            )
        raw.setdefault("backend", {})["base"] = next(iter(bases))
    if len(roots) == 1 and not (raw.get("log") or {}).get("path"):
        from zimo.logs.requests import default_path

        raw.setdefault("log", {})["path"] = str(default_path(roots[0]))
    try:
        return ServeConfig.model_validate(raw), roots
    except ValidationError as e:
        err = e.errors(include_url=False)[0]
        key = "serve." + ".".join(str(x) for x in err["loc"])
        raise ConfigError(f"'{key}' in zimo.yaml: {err['msg'].lower()}", "fix the value") from None


def _deep_merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = (
            _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
        )
    return out


def safe_host(settings: ServeConfig, host: str, say=print) -> str:
    """The host to bind: with no API keys, loopback only (and say so)."""
    from zimo.serve.keys import KeyStore

    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    ks = KeyStore(settings.keys_path())
    try:
        active = ks.count_active()
    finally:
        ks.close()
    if settings.require_keys is False or active == 0:
        if not loopback:
            say(
                f"no API keys configured ({settings.keys_path()}): binding to 127.0.0.1 only, "
                f"not {host}. Create one with `zimo keys create NAME` to serve other machines."
            )
        else:
            say(
                "no API keys configured: anyone on this machine can call the server (localhost only)"
            )
        return "127.0.0.1" if not loopback else host
    say(f"API keys required ({active} active)")
    return host


def gateway_app(settings: ServeConfig, projects: list[Path] = ()):
    """What ``zimo serve`` runs: the API app with the dashboard mounted at ``/ui`` (on the same
    app and state, so it shows the live registry and log)."""
    from zimo.serve.app import create_app
    from zimo.web.ui import mount_ui

    app = create_app(settings, projects=list(projects))
    mount_ui(app)
    return app


def run_server(settings: ServeConfig, projects: list[Path] = (), say=print) -> None:
    """Start ``zimo serve`` in the foreground (uvicorn) until interrupted."""
    import uvicorn

    for sub in settings.models:
        if sub.adapter_dir and not (Path(sub.adapter_dir) / "adapter_config.json").is_file():
            raise ZimoError(
                f"sub-model {sub.name!r}: {sub.adapter_dir} is not a PEFT adapter folder",
                "point it at the adapter/ folder of a trained sub-model",
            )
    host = safe_host(settings, settings.host, say)
    # The app decides on auth from the address actually bound, not the one asked for.
    settings = settings.model_copy(update={"host": host})
    app = gateway_app(settings, projects)
    say(f"zimo serve on http://{host}:{settings.port}/v1 (base {settings.backend.base}, "
        f"backend {settings.backend.kind}); models load now…")  # fmt: skip
    uvicorn.run(app, host=host, port=settings.port, log_level="warning", timeout_keep_alive=30)


def _keys(db: Path | None):
    from zimo.serve.config import serve_home
    from zimo.serve.keys import KeyStore

    return KeyStore(db or serve_home() / "keys.sqlite")


def register(app: typer.Typer) -> None:
    """Add ``serve``, ``keys`` and ``logs`` to the ``zimo`` app."""
    app.command("serve")(serve)
    app.add_typer(keys, name="keys")
    app.command("logs")(logs)


def serve(
    projects: list[Path] = typer.Argument(None, help="project folders whose sub-models to serve"),
    host: str = typer.Option(None, help="bind address (default 127.0.0.1)"),
    port: int = typer.Option(None, help="port (default 8000)"),
    base: str = typer.Option(None, help="base model: preset, folder or .gguf"),
    backend: str = typer.Option(None, help="transformers | llamacpp | vllm"),
    upstream: str = typer.Option(None, help="OpenAI-compatible URL for non-local models"),
    model: list[str] = typer.Option([], "--model", "-m", help="NAME=FOLDER of a sub-model"),
    config: Path = typer.Option(None, help="a YAML file with serve settings"),
) -> None:
    """Serve sub-models (and a gateway to the big model) through an OpenAI-compatible API."""
    import yaml

    over: dict = {}
    if config is not None:
        if not config.is_file():
            raise ConfigError(f"{config} does not exist", "pass a YAML file with serve settings")
        over = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
        over = over.get("serve", over)
    for k, v in (("host", host), ("port", port)):
        if v is not None:
            over[k] = v
    if base:
        over.setdefault("backend", {})["base"] = base
    if backend:
        over.setdefault("backend", {})["kind"] = backend
    if upstream:
        over.setdefault("upstream", {})["base_url"] = upstream
    settings, roots = settings_from_projects(list(projects or []), over)
    extra = []
    from zimo.serve.registry import load_submodel

    for spec in model:
        name, sep, folder = spec.partition("=")
        if not sep:
            raise ConfigError(f"--model {spec!r} must be NAME=FOLDER", "e.g. -m sms=out/sms")
        try:
            extra.append(load_submodel(folder, name))
        except (ValueError, OSError) as e:
            raise ZimoError(str(e), "point --model at a trained sub-model folder") from None
    if extra:
        settings = settings.model_copy(update={"models": [*settings.models, *extra]})
    run_server(settings, roots, say=lambda m: typer.echo(m, err=True))


keys = typer.Typer(help="API keys of `zimo serve` (stored hashed).", no_args_is_help=True)
db_opt = typer.Option(None, "--db", help="key database (default ~/.zimo/serve/keys.sqlite)")


@keys.command("create")
def keys_create(
    name: str = typer.Argument(..., help="who or what uses the key"),
    models: str = typer.Option(None, help="comma-separated allow-list (default: all)"),
    rate: int = typer.Option(None, help="requests per minute (default: the server's)"),
    admin: bool = typer.Option(False, help="may call /admin endpoints"),
    big_budget_usd: float = typer.Option(
        None,
        "--big-budget-usd",
        help="USD this key may spend upstream (cascades' big tier, forwarded requests); past "
        "it, a cascade answers with its best local tier, marked degraded",
    ),
    budget_period: str = typer.Option(
        None, "--budget-period", help="day (UTC) | month | total (default: month)"
    ),
    db: Path = db_opt,
) -> None:
    """Create a key and print it once (only its hash is stored)."""
    from zimo.serve.keys import check_budget

    allow = [m.strip() for m in models.split(",") if m.strip()] if models else None
    try:  # checked before the database is opened: a bad value leaves no file behind
        check_budget(big_budget_usd, budget_period)
    except ValueError as e:
        raise ConfigError(str(e).replace("big_budget_usd", "--big-budget-usd")
                          .replace("budget_period", "--budget-period"),
                          "e.g. --big-budget-usd 5 --budget-period month") from None  # fmt: skip
    ks = _keys(db)
    try:
        key, rec = ks.create(name, models=allow, rate_per_minute=rate, admin=admin,
                             big_budget_usd=big_budget_usd, budget_period=budget_period)  # fmt: skip
    except ValueError as e:
        raise ConfigError(str(e)) from None
    finally:
        ks.close()
    typer.echo(key)
    typer.echo(f"key {rec.id} created; store it now — it cannot be shown again", err=True)


@keys.command("list")
def keys_list(db: Path = db_opt, as_json: bool = typer.Option(False, "--json")) -> None:
    """List keys (ids, names, allow-lists, big-tier spend; never secrets)."""
    from zimo.serve.keys import key_row

    ks = _keys(db)
    try:
        rows = [key_row(ks, k) for k in ks.list()]
    finally:
        ks.close()
    if as_json:
        typer.echo(json.dumps(rows, indent=1))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table("id", "name", "models", "rate/min", "big-tier USD", "admin", "created", "revoked",
              "last used")  # fmt: skip
    for r in rows:
        t.add_row(r["id"], r["name"], ",".join(r["models"]) if r["models"] else "all",
                  str(r["rate_per_minute"] or "-"), _budget_cell(r), "yes" if r["admin"] else "",
                  r["created_at"], r["revoked_at"] or "", r["last_used_at"] or "")  # fmt: skip
    Console().print(t)


def _budget_cell(row: dict) -> str:
    if row.get("big_budget_usd") is None:
        return "-"
    per = "in total" if row["budget_period"] == "total" else f"this {row['budget_period']}"
    return f"{row['big_spent_usd']:.4f} of {row['big_budget_usd']:g} {per}"


@keys.command("revoke")
def keys_revoke(
    key_id: str = typer.Argument(..., help="key id (or the full key)"), db: Path = db_opt
) -> None:
    """Revoke a key; running servers refuse it from the next request on."""
    ks = _keys(db)
    try:
        ok = ks.revoke(key_id)
    finally:
        ks.close()
    if not ok:
        raise ZimoError(f"no active key {key_id!r}", "see `zimo keys list`")
    typer.echo(f"revoked {key_id}")


def logs(
    db: Path = typer.Option(None, "--db", help="request log (default: the serve log)"),
    project: Path = typer.Option(None, help="a project: use <project>/.zimo/requests.sqlite"),
    model: str = typer.Option(None, help="only this requested model"),
    since: str = typer.Option(None, help="ISO time, inclusive"),
    limit: int = typer.Option(20, help="newest N rows (table view)"),
    export: Path = typer.Option(None, help="write all matching rows to .jsonl or .csv"),
) -> None:
    """Browse the gateway's request log, or export it."""
    from zimo.logs.requests import RequestLog, default_path, query, to_iso

    if since is not None:
        try:
            since = to_iso(since)
        except ValueError:
            raise ConfigError(
                f"--since {since!r} is not a time",
                "use ISO-8601, e.g. --since 2026-01-31 or --since 2026-01-31T12:00:00Z",
            ) from None
    path = db or default_path(project)
    if not path.is_file():
        raise ZimoError(f"no request log at {path}", "start `zimo serve` first or pass --db")
    if export is not None:
        with RequestLog(path) as rl:
            rows = list(rl.iter(model=model, since=since))
        _export(rows, export)
        typer.echo(f"{len(rows)} rows -> {export}", err=True)
        return
    rows = query(path, model=model, since=since, limit=limit, newest_first=True)
    from rich.console import Console
    from rich.table import Table

    t = Table("time", "key", "model", "answered by", "status", "tokens", "ms", "cost $", "text")
    for r in rows:
        text = r.get("response") or r.get("error") or ""
        t.add_row(r["time"], r.get("key_id") or "-", str(r.get("model")),
                  str(r.get("answered_by") or "-"), str(r.get("status")),
                  str((r.get("prompt_tokens") or 0) + (r.get("completion_tokens") or 0)),
                  f"{r.get('latency_ms') or 0:.0f}", f"{r.get('cost') or 0:.6f}",
                  text.replace("\n", " ")[:50])  # fmt: skip
    Console().print(t)


def _export(rows: list[dict], out: Path) -> None:
    from zimo.fileio import write_text_atomic

    if out.suffix == ".csv":
        import io

        buf = io.StringIO()
        cols = list(rows[0]) if rows else ["id"]
        w = csv.DictWriter(buf, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow({k: json.dumps(v, ensure_ascii=False) if isinstance(v, list | dict) else v
                        for k, v in r.items()})  # fmt: skip
        write_text_atomic(out, buf.getvalue())
    elif out.suffix in (".jsonl", ".json"):
        write_text_atomic(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    else:
        raise ConfigError(f"--export {out}: use a .jsonl or .csv file name")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(0)
