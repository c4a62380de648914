"""Spend caps on upstream (big-model) calls: the caller's key (``zimo keys create
--big-budget-usd``) and the whole gateway (``serve.upstream.budget_usd``).

Both are kept in the key database (:meth:`zimo.serve.keys.KeyStore.reserve`): a call reserves
its estimated cost on every budget that covers it before it starts, and is settled at its real
cost when it ends. A cascade whose budget is spent answers locally, marked degraded; a request
forwarded upstream as is has no local answer, so it gets OpenAI's ``insufficient_quota`` 429.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from zimo.serve.errors import APIError
from zimo.serve.keys import ApiKey, Hold, request_key

GATEWAY = "gateway"  # the spend row of serve.upstream.budget_usd (key ids are 8 hex digits)


@dataclass
class Spend:
    """The reservations of one upstream call (empty when no budget covers it)."""

    holds: list[Hold] = field(default_factory=list)

    def settle(self, st, usd: float | None) -> None:
        """The call's real cost (None: it failed and cost nothing)."""
        for h in self.holds:
            st.keys.settle(h, usd)
        self.holds = []


class BudgetSpent(Exception):
    """No budget left for the call: ``who`` is ``key`` or ``gateway``."""

    def __init__(self, who: str, message: str):
        super().__init__(message)
        self.who = who
        self.message = message


def reserve(st, usd: float, *, charge_key: bool = True) -> Spend:
    """Reserve ``usd`` on the request's key's budget (unless ``charge_key`` is False, as for
    the gateway's own shadow calls) and on the gateway's; raise :class:`BudgetSpent` when one
    cannot take it (nothing stays reserved then)."""
    spend = Spend()
    if st.keys is None:
        return spend
    key: ApiKey | None = request_key.get() if charge_key else None
    up = st.settings.upstream
    budgets = []
    if key is not None and key.big_budget_usd is not None:
        budgets.append(("key", key.id, key.big_budget_usd, key.budget_period or "month"))
    if up is not None and up.budget_usd is not None:
        budgets.append(("gateway", GATEWAY, up.budget_usd, up.budget_period))
    for who, bid, cap, period in budgets:
        hold = st.keys.reserve(bid, cap, period, usd)
        if hold is None:
            spend.settle(st, None)
            what = (f"API key {bid} has spent its big-tier budget ({cap:g} USD "
                    f"{_per(period)})" if who == "key" else
                    f"this gateway has spent serve.upstream.budget_usd ({cap:g} USD "
                    f"{_per(period)})")  # fmt: skip
            raise BudgetSpent(who, what)
        spend.holds.append(hold)
    return spend


def _per(period: str) -> str:
    return "in total" if period == "total" else f"this {period}"


def quota_error(e: BudgetSpent) -> APIError:
    """A forwarded request over budget: OpenAI's answer to an exhausted quota."""
    hint = ("ask the operator to raise it (zimo keys create --big-budget-usd)" if e.who == "key"
            else "the operator can raise serve.upstream.budget_usd")  # fmt: skip
    return APIError(429, f"{e.message}; {hint}", code="insufficient_quota",
                    type="insufficient_quota")  # fmt: skip
