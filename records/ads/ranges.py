"""Ranges as the libraries write them, parsed into bounds with the original text kept.

"10K-15K", "≤ 10k", "< 100", "> 1M", "1,000 - 4,999", "100000-149999", "€100-€499",
"1M+", lower and upper bounds sent as strings ("1000", "1999"), or a plain number.
"""

from __future__ import annotations

import re
from typing import Any

from schemas.ad import Bounds, Spend

_SUFFIX = {"": 1, "k": 1_000, "m": 1_000_000, "b": 1_000_000_000, "mn": 1_000_000, "mio": 1_000_000}
_NUMBER = r"(\d[\d.,\u202f\u00a0 ]*)\s*(k|m|mn|mio|b)?"
_CURRENCY = re.compile(r"[€$£]|\b(?:EUR|USD|GBP|PLN|SEK|DKK|CZK|HUF|RON|BGN|CHF|NOK)\b", re.I)


def _number(digits: str, suffix: str | None) -> int:
    digits = re.sub(r"[\u202f\u00a0 ]", "", digits)
    factor = _SUFFIX[(suffix or "").lower()]
    if factor == 1:
        # Grouping separators: "1,000", "1.000" (German); never fractions in counts.
        return int(re.sub(r"[.,]", "", digits))
    return round(float(digits.replace(",", ".")) * factor)


def parse_range(text: Any) -> Bounds | None:
    """Bounds of a range or bucket; ValueError if the text is not one (nothing is guessed)."""
    if text is None or text == "":
        return None
    if isinstance(text, int | float) and not isinstance(text, bool):
        return Bounds(lower=int(text), upper=int(text), original=str(text))
    original = str(text)
    value = (
        _CURRENCY.sub("", original).strip().lower().replace("\u2013", "-").replace("\u2014", "-")
    )
    value = re.sub(r"\s+", " ", value)
    if m := re.fullmatch(rf"(≤|<=|<|under|bis|up to)\s*{_NUMBER}", value):
        upper = _number(m.group(2), m.group(3))
        strict = m.group(1) in ("<", "under")  # "< 100" is at most 99
        return Bounds(lower=0, upper=upper - 1 if strict else upper, original=original)
    if m := re.fullmatch(rf"(≥|>=|>|over|more than|über|mehr als)\s*{_NUMBER}", value):
        lower = _number(m.group(2), m.group(3))
        strict = m.group(1) in (">", "over", "more than", "über", "mehr als")
        return Bounds(lower=lower + 1 if strict else lower, upper=None, original=original)
    if m := re.fullmatch(rf"{_NUMBER}\s*\+", value):
        return Bounds(lower=_number(m.group(1), m.group(2)), upper=None, original=original)
    if m := re.fullmatch(rf"{_NUMBER}\s*-\s*{_NUMBER}", value):
        lower, upper = _number(m.group(1), m.group(2)), _number(m.group(3), m.group(4))
        if upper < lower:
            raise ValueError(f"range {original!r}: upper bound below lower bound")
        return Bounds(lower=lower, upper=upper, original=original)
    if m := re.fullmatch(_NUMBER, value):
        number = _number(m.group(1), m.group(2))
        return Bounds(lower=number, upper=number, original=original)
    raise ValueError(f"not a range: {original!r}")


def bounds_of(lower: Any, upper: Any) -> Bounds | None:
    """Bounds sent as two values (often strings: "1000", "1999"; upper absent when open)."""
    if lower in (None, "") and upper in (None, ""):
        return None
    low = int(str(lower).replace(",", "")) if lower not in (None, "") else None
    high = int(str(upper).replace(",", "")) if upper not in (None, "") else None
    original = f"{lower if lower is not None else ''}-{upper if upper is not None else ''}"
    return Bounds(lower=low, upper=high, original=original)


def spend_of(lower: Any, upper: Any, currency: str | None) -> Spend | None:
    """Spend bounds with their currency (ISO 4217 code as sent)."""
    bounds = bounds_of(lower, upper)
    if bounds is None:
        return None
    return Spend(**bounds.model_dump(), currency=(currency or None))
