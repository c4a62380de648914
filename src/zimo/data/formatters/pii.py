"""PII redaction with typed placeholders, Chinese formats included.

Patterns are validated where the format has a check: Chinese resident ID numbers by their
ISO 7064 MOD 11-2 check digit and birth date, bank cards by the Luhn checksum, IPv4 by octet
range. Hand-written because no maintained library covers the Chinese formats; presidio (for
English names and addresses) needs spaCy models we cannot download, so it is an optional extra.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from datetime import date
from typing import Any, Literal

from pydantic import Field

from zimo.data.pipeline import Formatter, Step
from zimo.data.step_spec import StepSpec

# The types a `pii` step may name in zimo.yaml (person/address need the presidio extra).
PII_TYPES = ("email", "url", "ip", "cn_id", "bank_card", "cn_mobile", "cn_landline", "phone")

PLACEHOLDERS = {
    "email": "<EMAIL>",
    "url": "<URL>",
    "ip": "<IP>",
    "cn_id": "<ID_NUMBER>",
    "bank_card": "<BANK_CARD>",
    "cn_mobile": "<PHONE>",
    "cn_landline": "<PHONE>",
    "phone": "<PHONE>",
    "person": "<PERSON>",
    "address": "<ADDRESS>",
}

_ND = r"(?<![0-9A-Za-z])"  # not preceded by a digit/letter
_NA = r"(?![0-9A-Za-z])"
_STOP = "\\s<>\"'\u3000-\u303f\u4e00-\u9fff\uff00-\uffef"  # URLs end at CJK text/punctuation

EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})*\.[A-Za-z]{2,24}(?![A-Za-z0-9-])"
)
URL = re.compile(rf"(?:(?:https?|ftp)://|www\.)[^{_STOP}]+", re.IGNORECASE)
IPV4 = re.compile(
    rf"(?<!\d\.){_ND}(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){{3}}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d){_NA}(?!\.\d)"
)
IPV6 = re.compile(
    r"(?<![0-9A-Za-z:_])(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}(?![0-9A-Za-z:_])"
    r"|(?<![0-9A-Za-z:_])(?:[0-9A-Fa-f]{1,4}:){1,6}:(?:[0-9A-Fa-f]{1,4}:){0,5}[0-9A-Fa-f]{1,4}(?![0-9A-Za-z:_])"
)
CN_ID = re.compile(
    rf"{_ND}[1-9]\d{{5}}(?:18|19|20)\d{{2}}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{{3}}[0-9Xx]{_NA}"
)
BANK_CARD = re.compile(rf"{_ND}(?:\d{{4}}[ -]?){{3}}\d{{1,7}}{_NA}")
CN_MOBILE = re.compile(rf"(?:(?:\+|00)86[ -]?)?{_ND}1[3-9]\d[ -]?\d{{4}}[ -]?\d{{4}}{_NA}")
CN_LANDLINE = re.compile(
    rf"(?:(?:\+|00)86[ -]?)?(?:\(0\d{{2,3}}\)|{_ND}0\d{{2,3}})[ -]?[2-9]\d{{2,3}}[ -]?\d{{4}}(?:-\d{{1,5}})?{_NA}"
    rf"|{_ND}[48]00[ -]?\d{{3}}[ -]?\d{{4}}{_NA}"
)
INTL_PHONE = re.compile(
    rf"{_ND}(?:\+|00)[1-9]\d{{0,2}}[ -]?(?:\(\d{{1,4}}\)[ -]?)?\d{{2,4}}(?:[ -]?\d{{2,4}}){{1,4}}{_NA}"
)
US_PHONE = re.compile(rf"(?:\(\d{{3}}\) ?|{_ND}\d{{3}}[-.])\d{{3}}[-.]\d{{4}}{_NA}")

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def valid_cn_id(number: str) -> bool:
    """18-digit resident ID: real birth date and the MOD 11-2 check character."""
    if len(number) != 18:
        return False
    try:
        date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return False
    total = sum(int(d) * w for d, w in zip(number[:17], _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11] == number[17].upper()


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _plausible_ipv6(s: str) -> bool:
    # "c::b" in a Rust path or "a:b:c" in prose is not an address: ask for 3+ groups and a digit.
    return len([g for g in s.split(":") if g]) >= 3 and any(c.isdigit() for c in s)


def _strip_url(m: re.Match[str]) -> tuple[str, str]:
    # Trailing sentence punctuation is not part of a URL.
    url = m.group()
    core = url.rstrip(".,;:!?)]}'\"")
    return core, url[len(core) :]


Validator = Callable[[str], bool]


def _digits(s: str) -> str:
    return re.sub(r"\D", "", s)


def _redact(
    text: str, pattern: re.Pattern[str], placeholder: str, check: Validator | None = None
) -> tuple[str, int]:
    count = 0

    def sub(m: re.Match[str]) -> str:
        nonlocal count
        if check is not None and not check(m.group()):
            return m.group()
        count += 1
        return placeholder

    return pattern.sub(sub, text), count


def redact(text: str, types: list[str]) -> tuple[str, Counter]:
    """Redact ``types`` in order; returns the new text and counts per type."""
    counts: Counter = Counter()
    has_digit = any(c.isdigit() for c in text)
    for kind in types:
        n = 0
        if kind == "email" and "@" in text:
            text, n = _redact(text, EMAIL, PLACEHOLDERS["email"])
        elif kind == "url" and ("://" in text or "www." in text.lower()):
            count = 0

            def sub(m: re.Match[str]) -> str:
                nonlocal count
                count += 1
                _, tail = _strip_url(m)
                return PLACEHOLDERS["url"] + tail

            text = URL.sub(sub, text)
            n = count
        elif not has_digit and kind not in ("email", "url"):
            continue
        elif kind == "ip":
            text, n = _redact(text, IPV4, PLACEHOLDERS["ip"])
            if ":" in text:
                text, n6 = _redact(text, IPV6, PLACEHOLDERS["ip"], _plausible_ipv6)
                n += n6
        elif kind == "cn_id":
            text, n = _redact(text, CN_ID, PLACEHOLDERS["cn_id"], valid_cn_id)
        elif kind == "bank_card":
            text, n = _redact(
                text,
                BANK_CARD,
                PLACEHOLDERS["bank_card"],
                lambda s: 13 <= len(_digits(s)) <= 19 and luhn_ok(_digits(s)),
            )
        elif kind == "cn_mobile":
            text, n = _redact(text, CN_MOBILE, PLACEHOLDERS["cn_mobile"])
        elif kind == "cn_landline":
            text, n = _redact(text, CN_LANDLINE, PLACEHOLDERS["cn_landline"])
        elif kind == "phone":
            text, n = _redact(
                text, INTL_PHONE, PLACEHOLDERS["phone"], lambda s: 8 <= len(_digits(s)) <= 15
            )
            text, n2 = _redact(text, US_PHONE, PLACEHOLDERS["phone"])
            n += n2
        if n:
            counts[kind] += n
    return text, counts


class RedactPii(Formatter):
    """Replace personal data with ``<EMAIL>``, ``<URL>``, ``<IP>``, ``<ID_NUMBER>``,
    ``<BANK_CARD>``, ``<PHONE>``; counts per type go to the step's ``extra`` stats and the
    record's ``meta.pii``."""

    name = "pii"

    def __init__(self, types: list[str] | None = None, presidio: bool = False) -> None:
        super().__init__()
        self.types = types or list(PII_TYPES)
        self._presidio = _load_presidio() if presidio else None
        self._current: Counter = Counter()

    def format(self, text: str) -> str:
        new, counts = redact(text, self.types)
        if self._presidio is not None:
            new, more = self._presidio(new)
            counts.update(more)
        self._current.update(counts)
        return new

    def apply(self, rec: dict[str, Any]) -> bool:
        self._current = Counter()
        changed = super().apply(rec)
        if self._current:
            self.stats.extra.update(self._current)
            rec.setdefault("meta", {})["pii"] = dict(self._current)
        return changed


def _load_presidio() -> Callable[[str], tuple[str, Counter]]:
    """English person names and addresses via presidio (optional; needs a spaCy model)."""
    from zimo.errors import ConfigError

    try:
        from presidio_analyzer import AnalyzerEngine
    except ImportError as e:
        raise ConfigError(
            "curate step pii has presidio: true but presidio-analyzer is not installed",
            "pip install presidio-analyzer and a spaCy English model, or set presidio: false",
        ) from e
    engine = AnalyzerEngine()
    wanted = {"PERSON": "person", "LOCATION": "address"}

    def run(text: str) -> tuple[str, Counter]:
        counts: Counter = Counter()
        results = engine.analyze(text=text, language="en", entities=list(wanted))
        for r in sorted(results, key=lambda r: r.start, reverse=True):
            kind = wanted[r.entity_type]
            text = text[: r.start] + PLACEHOLDERS[kind] + text[r.end :]
            counts[kind] += 1
        return text, counts

    return run


class PiiSpec(StepSpec):
    """Replace personal data with typed placeholders such as ``<PHONE>``."""

    step: Literal["pii"] = "pii"
    types: list[Literal[PII_TYPES]] = Field(default_factory=lambda: list(PII_TYPES))  # type: ignore[valid-type]
    # Optional: presidio for English person names / addresses (needs spaCy models; off).
    presidio: bool = False

    def build(self) -> Step:
        return RedactPii(types=list(self.types), presidio=self.presidio)
