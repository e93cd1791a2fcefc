"""Ranges as the libraries write them, parsed into bounds with the original text kept.

"10K-15K", "≤ 10k", "< 100", "> 1M", "1,000 - 4,999", "100000-149999", "€100-€499",
"1M+", lower and upper bounds sent as strings ("1000", "1999"), or a plain number.
"""

from __future__ import annotations

import re
from functools import lru_cache
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


def range_fields(text: Any) -> dict[str, Any] | None:
    """``parse_range`` as the plain fields of ``Bounds`` (a new dict each call): normalisers
    build whole records as dicts and validate them once."""
    if text is None or text == "":
        return None
    if isinstance(text, int | float) and not isinstance(text, bool):
        return {"lower": int(text), "upper": int(text), "original": str(text)}
    original = str(text)
    lower, upper = _parsed(original)
    return {"lower": lower, "upper": upper, "original": original}


def parse_range(text: Any) -> Bounds | None:
    """Bounds of a range or bucket; ValueError if the text is not one (nothing is guessed)."""
    fields = range_fields(text)
    return None if fields is None else Bounds(**fields)


# A library writes the same few buckets ("10K-15K", "≤ 10k") on every ad: parsed once each.
# Only the result is cached (an immutable pair); a text that is not a range raises each time.
@lru_cache(maxsize=4096)
def _parsed(original: str) -> tuple[int, int | None]:
    value = (
        _CURRENCY.sub("", original).strip().lower().replace("\u2013", "-").replace("\u2014", "-")
    )
    value = re.sub(r"\s+", " ", value)
    if m := re.fullmatch(rf"(≤|<=|<|under|bis|up to)\s*{_NUMBER}", value):
        upper = _number(m.group(2), m.group(3))
        strict = m.group(1) in ("<", "under")  # "< 100" is at most 99
        return 0, upper - 1 if strict else upper
    if m := re.fullmatch(rf"(≥|>=|>|over|more than|über|mehr als)\s*{_NUMBER}", value):
        lower = _number(m.group(2), m.group(3))
        strict = m.group(1) in (">", "over", "more than", "über", "mehr als")
        return lower + 1 if strict else lower, None
    if m := re.fullmatch(rf"{_NUMBER}\s*\+", value):
        return _number(m.group(1), m.group(2)), None
    if m := re.fullmatch(rf"{_NUMBER}\s*-\s*{_NUMBER}", value):
        lower, upper = _number(m.group(1), m.group(2)), _number(m.group(3), m.group(4))
        if upper < lower:
            raise ValueError(f"range {original!r}: upper bound below lower bound")
        return lower, upper
    if m := re.fullmatch(_NUMBER, value):
        number = _number(m.group(1), m.group(2))
        return number, number
    raise ValueError(f"not a range: {original!r}")


def bounds_fields(lower: Any, upper: Any) -> dict[str, Any] | None:
    """``bounds_of`` as the plain fields of ``Bounds``."""
    if lower in (None, "") and upper in (None, ""):
        return None
    low = int(str(lower).replace(",", "")) if lower not in (None, "") else None
    high = int(str(upper).replace(",", "")) if upper not in (None, "") else None
    original = f"{lower if lower is not None else ''}-{upper if upper is not None else ''}"
    return {"lower": low, "upper": high, "original": original}


def bounds_of(lower: Any, upper: Any) -> Bounds | None:
    """Bounds sent as two values (often strings: "1000", "1999"; upper absent when open)."""
    fields = bounds_fields(lower, upper)
    return None if fields is None else Bounds(**fields)


def spend_fields(lower: Any, upper: Any, currency: str | None) -> dict[str, Any] | None:
    """``spend_of`` as the plain fields of ``Spend``."""
    fields = bounds_fields(lower, upper)
    if fields is None:
        return None
    fields["currency"] = currency or None
    return fields


def spend_of(lower: Any, upper: Any, currency: str | None) -> Spend | None:
    """Spend bounds with their currency (ISO 4217 code as sent)."""
    fields = spend_fields(lower, upper, currency)
    return None if fields is None else Spend(**fields)
