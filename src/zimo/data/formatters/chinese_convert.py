"""Traditional → Simplified Chinese with OpenCC (optional dependency ``opencc``)."""

from __future__ import annotations

from typing import Literal

from zimo.data.pipeline import Formatter, Step
from zimo.data.step_spec import StepSpec
from zimo.errors import ConfigError

_HAN = ("\u4e00", "\u9fff")


class ChineseConvert(Formatter):
    """Convert with an OpenCC config (``t2s`` by default; ``s2t``, ``tw2s``, ``hk2s`` …)."""

    name = "chinese_convert"

    def __init__(self, config: str = "t2s") -> None:
        super().__init__()
        try:
            import opencc
        except ImportError as e:
            raise ConfigError(
                "curate step chinese_convert needs the opencc package",
                "pip install opencc, or remove the step from `curate.steps`",
            ) from e
        try:
            self._cc = opencc.OpenCC(config)
        except Exception as e:  # noqa: BLE001 - opencc raises RuntimeError/ValueError variants
            raise ConfigError(
                f"unknown opencc config {config!r} in curate step chinese_convert",
                "use t2s, s2t, tw2s, hk2s, t2tw or t2hk",
            ) from e

    def format(self, text: str) -> str:
        if not any(_HAN[0] <= ch <= _HAN[1] for ch in text):
            return text  # nothing to convert; skips the C call for non-Chinese text
        return self._cc.convert(text)


class ChineseConvertSpec(StepSpec):
    """Traditional → Simplified Chinese (needs the optional ``opencc`` package)."""

    step: Literal["chinese_convert"] = "chinese_convert"
    config: str = "t2s"

    def build(self) -> Step:
        return ChineseConvert(config=self.config)
