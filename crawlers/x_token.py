"""X's embed-widget token: the ``token`` parameter of the syndication endpoint
(``cdn.syndication.twimg.com/tweet-result?id=…&token=…``), computed from the post id as the
widget's JavaScript does: ``((id / 1e15) * Math.PI).toString(36).replace(/(0+|\\.)/g, '')``.
It protects nothing (anyone can compute it); it is here, apart from the spider, because
reproducing JavaScript's Number.prototype.toString(36) exactly is a concept of its own.
"""

from __future__ import annotations

import math
import re
import struct


def _next_double(value: float) -> float:
    bits = struct.unpack("<Q", struct.pack("<d", value))[0]
    return struct.unpack("<d", struct.pack("<Q", bits + 1))[0]


def js_radix_string(value: float, radix: int = 36) -> str:
    """``Number.prototype.toString(radix)`` for a finite positive number, digit for digit as
    V8 writes it (``DoubleToRadixCString``): the fraction is written only to the precision
    of the double, rounded half to even, with the carry taken back through the digits."""
    if not (2 <= radix <= 36) or not math.isfinite(value) or value < 0:
        raise ValueError("a finite, non-negative number and a radix of 2 to 36")
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    integer = math.floor(value)
    fraction = value - integer
    # Half the distance to the next double: digits below it are noise of the representation.
    delta = max(_next_double(0.0), 0.5 * (_next_double(value) - value))
    tail: list[int] = []
    if fraction >= delta:
        while True:
            fraction *= radix
            delta *= radix
            digit = int(fraction)
            tail.append(digit)
            fraction -= digit
            if (fraction > 0.5 or (fraction == 0.5 and digit & 1)) and fraction + delta > 1:
                while True:  # round up: the carry runs back through the digits written
                    if not tail:
                        integer += 1
                        break
                    last = tail.pop() + 1
                    if last < radix:
                        tail.append(last)
                        break
                break
            if fraction < delta:
                break
    head: list[int] = []
    number = float(integer)
    while math.frexp(number / radix)[1] - 53 > 0:  # digits beyond the double's precision
        number /= radix
        head.append(0)
    while True:
        remainder = math.fmod(number, radix)
        head.append(int(remainder))
        number = (number - remainder) / radix
        if number <= 0:
            break
    text = "".join(digits[d] for d in reversed(head))
    return text + ("." + "".join(digits[d] for d in tail) if tail else "")


def syndication_token(post_id: str | int) -> str:
    """The ``token`` the embed widget sends with ``tweet-result`` for a post id:
    ``((Number(id) / 1e15) * Math.PI).toString(36).replace(/(0+|\\.)/g, '')``."""
    number = float(int(post_id))  # Number("…"): the nearest double, as JavaScript rounds it
    return re.sub(r"0+|\.", "", js_radix_string(number / 1e15 * math.pi, 36))
