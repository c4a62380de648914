"""``zimo serve``: one OpenAI-compatible server for many sub-models, plus a gateway upstream.

Public API (imported lazily, so ``import zimo.logs.requests`` stays light)::

    from zimo.serve import create_app, ServeConfig, run_server
    app = create_app(ServeConfig(models=[...], upstream={...}))
"""

from __future__ import annotations

from typing import Any

__all__ = ["ServeConfig", "SubModel", "create_app", "run_server", "settings_from_projects"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from zimo.serve.app import create_app

        return create_app
    if name in ("ServeConfig", "SubModel"):
        from zimo.serve import config

        return getattr(config, name)
    if name in ("run_server", "settings_from_projects"):
        from zimo.serve import cli

        return getattr(cli, name)
    raise AttributeError(name)
