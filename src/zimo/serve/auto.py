"""`model: "auto"`: answer each request with the cheapest tier the fitted router trusts.

A project with a fitted router (``zimo route fit``, saved in ``<project>/.zimo/route/``) gets a
virtual model ``auto`` on the server. The router decides from the prompt alone; the answer says
which tier answered (``zimo.route``), whether it escalated beyond the cheapest tier, and the
router's score — all logged, so logged traffic can refit the router (the flywheel).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from zimo.workspace import Layout

log = logging.getLogger("zimo.serve")


def router_dir(project: str | Path) -> Path | None:
    d = Layout(project).route_dir
    return d if (d / "router.json").is_file() else None


def make_handler(router):
    """A virtual-model handler ``(ChatRequest, ServeState) -> Answer`` around ``router``."""
    cheapest = router.tier_names[0]

    async def handler(req, st):
        prompt = "\n".join(m.text() for m in req.messages if m.role == "user")
        tier, score = await asyncio.to_thread(router.decide, prompt)
        model = router.tier(tier).served_model
        sub_req = req.model_copy(update={"model": model})
        if model in st.virtual and model != req.model:
            # A tier may itself be served by a handler: a cascade (a project's name under
            # route.mode: cascade) or a classical sub-model, so `auto` can pick a cascade.
            ans = await st.virtual[model](sub_req, st)
        elif st.is_local(model):
            ans = await st.chat_local(model, req)
        else:
            ans = await st.chat_upstream(sub_req)
        inner = ans.route or {}
        ans.escalated = tier != cheapest or bool(ans.escalated)
        ans.route = {"tier": tier, "model": model, "score": round(float(score), 4),
                     "router": "pre-call"}  # fmt: skip
        if "cascade" in inner:  # the cascade the router picked says which of its tiers answered
            ans.route.update(cascade=inner["cascade"], cascade_tier=inner.get("tier"),
                             degraded=inner.get("degraded", False))  # fmt: skip
            if "reason" in inner:  # why the cascade's big tier did not answer
                ans.route["reason"] = inner["reason"]
        return ans

    return handler


def install_auto(state, projects: list[str | Path], name: str = "auto") -> bool:
    """Register ``auto`` from the first project that has a fitted router."""
    from zimo.route import Router

    for p in projects:
        d = router_dir(p)
        if d is None:
            continue
        router = Router.load(d)
        if router.needs_embeddings:
            # Load the embedder now, not on the first user's request (seconds for an LM).
            router.decide("warm-up")
        state.add_virtual_model(name, make_handler(router))
        log.info("serving %r through the router of %s (tiers: %s)", name, p, router.tier_names)
        return True
    return False
