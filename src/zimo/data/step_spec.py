"""What every curation step's settings share, and the catalogue of steps.

Each step module (``formatters/``, ``filters/``, ``dedup/``) defines its step class and, beside
it, a small pydantic spec with a ``step`` name (the discriminator of ``curate.steps`` in
``zimo.yaml``), its settings and ``build()``. Defining the spec registers it: adding a step
touches its own module only. :func:`step_specs` imports the three step packages once and
returns every registered spec, in module order.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from zimo.data.pipeline import Step

_REGISTRY: dict[str, type[StepSpec]] = {}
STEP_PACKAGES = ("zimo.data.formatters", "zimo.data.filters", "zimo.data.dedup")


class StepSpec(BaseModel):
    """Settings of one curation step; unknown keys are refused so a typo names the key."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    step: ClassVar[str]  # overridden by each spec as a Literal field with its name

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        name = cls.model_fields["step"].default
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise TypeError(f"two curation steps are named {name!r}")
        _REGISTRY[name] = cls

    def build(self) -> Step:
        raise NotImplementedError


def step_specs() -> dict[str, type[StepSpec]]:
    """``{step name: spec class}`` for every step in the step packages."""
    for pkg_name in STEP_PACKAGES:
        pkg = importlib.import_module(pkg_name)
        for mod in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
            importlib.import_module(f"{pkg_name}.{mod.name}")
    return dict(_REGISTRY)
