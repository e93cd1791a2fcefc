"""What a report is about, read from its link text, its file name and its content: the
platform (service), the reporting period, the DSA articles it reports under, its language
and a title. Every function is a best guess from text and returns None when nothing fits.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterable
from datetime import date

# Services designated as VLOPs or VLOSEs (and their usual spellings). The key is the
# platform name recorded; the first service named in a text wins.
SERVICES: dict[str, str] = {
    "tiktok": r"tik\s?tok",
    "x": r"twitter|x\.com|\bx corp\b|\bx internet\b",
    "facebook": r"facebook",
    "instagram": r"instagram",
    "youtube": r"you\s?tube",
    "linkedin": r"linked\s?in",
    "snapchat": r"snapchat",
    "pinterest": r"pinterest",
    "amazon": r"amazon",
    "aliexpress": r"ali\s?express",
    "temu": r"\btemu\b",
    "shein": r"\bshein\b",
    "zalando": r"zalando",
    "booking": r"booking\.com",
    "wikipedia": r"wikipedia",
    "google-search": r"google search",
    "google-play": r"google play",
    "google-maps": r"google maps",
    "google-shopping": r"google shopping",
    "bing": r"\bbing\b",
    "app-store": r"app store",
    "pornhub": r"pornhub",
    "stripchat": r"stripchat",
    "xvideos": r"xvideos",
    "xnxx": r"\bxnxx\b",
}
_SERVICE_PATTERNS = {name: re.compile(pattern, re.IGNORECASE) for name, pattern in SERVICES.items()}
# X is often just "X": only a capital X standing alone counts, only in link texts, and not
# as a numbering ("Annex X", "Section X").
_BARE_X = re.compile(r"(?<![\w.&-])(?:(\w+)\s+)?X(?![\w.&'-])")
_NUMBERED = {"annex", "anhang", "appendix", "article", "art", "section", "part", "chapter", "table"}

TRANSPARENCY_ARTICLES = (15, 24, 42)
_ARTICLES = re.compile(
    r"\b(?:art(?:icles?|ikel|s)?\.?)\s*"
    r"(\d{1,3}(?:\s*\(\d+\))?(?:\s*(?:,|and|und|et|y|e|&|/)\s*\d{1,3}(?:\s*\(\d+\))?)*)",
    re.IGNORECASE,
)
_ARTICLE_PARENS = re.compile(r"\(\d+\)")

MONTHS: dict[str, int] = {}
for _number, _names in enumerate(
    (
        "january jan januar janvier enero gennaio",
        "february feb februar fevrier février febrero febbraio",
        "march mar märz maerz mars marzo",
        "april apr avril abril aprile",
        "may mai mayo maggio",
        "june jun juni juin junio giugno",
        "july jul juli juillet julio luglio",
        "august aug aout août agosto",
        "september sep sept septembre septiembre settembre",
        "october oct oktober octobre octubre ottobre",
        "november nov novembre noviembre",
        "december dec dezember décembre decembre diciembre dicembre",
    ),
    start=1,
):
    for _name in _names.split():
        MONTHS[_name] = _number
_MONTH = "|".join(sorted((re.escape(m) for m in MONTHS), key=len, reverse=True))
# En and em dashes are written as escapes: they look like hyphens in an editor.
_DASHES = "\u2013|\u2014|-"
_DASH = rf"(?:\s*(?:{_DASHES}|to|until|through|bis|au|al)\s*|\s+)"
_MONTH_RANGE = re.compile(
    rf"(?<![\w])(?:(\d{{1,2}})\.?\s+)?({_MONTH})(?![^\W\d_])\.?(?:\s+(20\d\d))?,?{_DASH}"
    rf"(?:(\d{{1,2}})\.?\s+)?({_MONTH})(?![^\W\d_])\.?,?\s+(20\d\d)(?!\d)",
    re.IGNORECASE,
)
_HALF = re.compile(
    r"(?<![a-z0-9])(?:h([12])[\s_-]*(20\d\d)|(20\d\d)[\s_-]*h([12]))(?![a-z0-9])", re.I
)
_HALF_WORDS = re.compile(
    r"\b(first|second|1st|2nd)\s+half\s+(?:of\s+)?(?:the\s+year\s+)?(20\d\d)\b", re.I
)
_ISO_RANGE = re.compile(
    rf"(20\d\d)-(\d\d)-(\d\d)\s*(?:{_DASHES}|to|until|bis|/)\s*(20\d\d)-(\d\d)-(\d\d)", re.I
)
_DMY_RANGE = re.compile(
    rf"\b(\d{{1,2}})[./](\d{{1,2}})[./](20\d\d)\s*(?:{_DASHES}|to|until|bis)\s*"
    rf"(\d{{1,2}})[./](\d{{1,2}})[./](20\d\d)\b",
    re.I,
)
# The harmonised templates give the period as two fields, start and end.
_FIELDS = re.compile(
    r"(?:start|from|beginning|begin)\D{0,60}?(20\d\d)-(\d\d)-(\d\d)"
    r".{0,200}?(?:end|until|to)\D{0,60}?(20\d\d)-(\d\d)-(\d\d)",
    re.IGNORECASE | re.DOTALL,
)

_COMMON_WORDS = {
    "en": "the and of to in is for on that with are by this be as from",
    "de": "der die und das von mit den ist nicht für auf des dem eine wird zu",
    "fr": "le la les et des du une est pour dans que sur par au aux",
    "es": "el la los las y de del que en por para una con se",
    "it": "il la le e di del della che per una con sono gli alla",
    "nl": "de het een en van in op voor met zijn dat niet wordt",
    "pl": "i w na z do że się nie jest przez oraz dla od",
}
STOPWORDS = {lang: frozenset(str.split(words)) for lang, words in _COMMON_WORDS.items()}
_LANGUAGE_IN_URL = re.compile(r"(?:^|[/_.-])(en|de|fr|es|it|nl|pl)(?:[/_.-]|$)", re.I)
_GENERIC_LINK_TEXT = re.compile(r"^(download|pdf|zip|xlsx|csv|here|hier|link|view|open)\W*$", re.I)


def platform_named(text: str | None, *, bare_x: bool = False) -> str | None:
    """The service a text names first (``bare_x``: a lone capital X counts as X)."""
    if not text:
        return None
    found: list[tuple[int, str]] = []
    for name, pattern in _SERVICE_PATTERNS.items():
        match = pattern.search(text)
        if match:
            found.append((match.start(), name))
    if bare_x:
        for match in _BARE_X.finditer(text):
            if (match[1] or "").lower() not in _NUMBERED:
                found.append((match.start(), "x"))
                break
    return min(found)[1] if found else None


def infer_platform(
    *, link_text: str | None, file_names: Iterable[str], text: str | None, index_platform: str
) -> str:
    """The service a report is about: named in its link text, else in its file name; else
    the index page's platform when that is a service itself (TikTok's hub lists TikTok's
    reports), else the first service its content names; else the index page's platform."""
    named = platform_named(link_text, bare_x=True)
    for name in file_names:
        named = named or platform_named(re.sub(r"[_.-]+", " ", name))
    if named:
        return named
    if index_platform in SERVICES:
        return index_platform
    return platform_named((text or "")[:5000]) or index_platform


def _month_end(year: int, month: int) -> date:
    return date(year, month, calendar.monthrange(year, month)[1])


def _safe_date(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def period_in(text: str | None) -> tuple[date, date] | None:
    """The reporting period a text names: "H1 2025", "1 July 2024 - 31 December 2024",
    "October 2024 - March 2025", "2025-01-01 to 2025-06-30", template start/end fields."""
    if not text:
        return None
    candidates: list[tuple[int, tuple[date, date]]] = []
    for m in _ISO_RANGE.finditer(text):
        start = _safe_date(int(m[1]), int(m[2]), int(m[3]))
        end = _safe_date(int(m[4]), int(m[5]), int(m[6]))
        if start and end and start < end:
            candidates.append((m.start(), (start, end)))
    for m in _DMY_RANGE.finditer(text):
        start = _safe_date(int(m[3]), int(m[2]), int(m[1]))
        end = _safe_date(int(m[6]), int(m[5]), int(m[4]))
        if start and end and start < end:
            candidates.append((m.start(), (start, end)))
    for m in _MONTH_RANGE.finditer(text):
        first, last = MONTHS[m[2].lower()], MONTHS[m[5].lower()]
        end_year = int(m[6])
        start_year = int(m[3]) if m[3] else (end_year if first <= last else end_year - 1)
        start = _safe_date(start_year, first, int(m[1]) if m[1] else 1)
        end = _safe_date(end_year, last, int(m[4])) if m[4] else _month_end(end_year, last)
        if start and end and start < end:
            candidates.append((m.start(), (start, end)))
    for m in _HALF.finditer(text):
        half = int(m[1] or m[4])
        year = int(m[2] or m[3])
        candidates.append((m.start(), _half(year, half)))
    for m in _HALF_WORDS.finditer(text):
        half = 1 if m[1].lower() in ("first", "1st") else 2
        candidates.append((m.start(), _half(int(m[2]), half)))
    for m in _FIELDS.finditer(text):
        start = _safe_date(int(m[1]), int(m[2]), int(m[3]))
        end = _safe_date(int(m[4]), int(m[5]), int(m[6]))
        if start and end and start < end:
            candidates.append((m.start(), (start, end)))
    return min(candidates)[1] if candidates else None


def _half(year: int, half: int) -> tuple[date, date]:
    if half == 1:
        return date(year, 1, 1), date(year, 6, 30)
    return date(year, 7, 1), date(year, 12, 31)


def infer_period(*texts: str | None) -> tuple[date, date] | None:
    """The first period found, trying the texts in order (link text, file name, content)."""
    for text in texts:
        # File names separate words with dashes and underscores: "October-2024-March-2025".
        found = period_in(text) or period_in(re.sub(r"[-_.]+", " ", text) if text else None)
        if found:
            return found
    return None


def period_label(start: date | None, end: date | None) -> str | None:
    """``2025-H1`` for a calendar half-year, else ``start/end`` (ISO 8601 interval)."""
    if start is None or end is None:
        return None
    if (start.month, start.day, end.month, end.day) == (1, 1, 6, 30) and start.year == end.year:
        return f"{start.year}-H1"
    if (start.month, start.day, end.month, end.day) == (7, 1, 12, 31) and start.year == end.year:
        return f"{start.year}-H2"
    return f"{start.isoformat()}/{end.isoformat()}"


def infer_articles(*texts: str | None) -> str | None:
    """The transparency articles (15, 24, 42) the texts cite, as "Art. 15, Art. 24"."""
    found: set[int] = set()
    for text in texts:
        for m in _ARTICLES.finditer(text or ""):
            numbers = _ARTICLE_PARENS.sub("", m[1])
            found.update(int(n) for n in re.findall(r"\d{1,3}", numbers))
    cited = [n for n in TRANSPARENCY_ARTICLES if n in found]
    return ", ".join(f"Art. {n}" for n in cited) or None


def infer_language(text: str | None, url: str | None = None) -> str | None:
    """ISO 639-1 code of the language most of the text's common words belong to; else one
    named in the URL (``/en/``, ``_DE.pdf``); else None."""
    words = re.findall(r"[^\W\d_]+", (text or "")[:20000].lower())
    if words:
        counts = {lang: 0 for lang in STOPWORDS}
        for word in words:
            for lang, stop in STOPWORDS.items():
                if word in stop:
                    counts[lang] += 1
        best = max(counts, key=lambda lang: counts[lang])
        if counts[best] >= 5:
            return best
    match = _LANGUAGE_IN_URL.search(url or "")
    return match[1].lower() if match else None


def infer_title(
    *, link_text: str | None, document_title: str | None, first_line: str | None, file_name: str
) -> str:
    """The link's text when it says something, else the document's own title or first
    line, else the file name."""
    for candidate in (link_text, document_title, first_line):
        if candidate and len(candidate.strip()) >= 3 and not _GENERIC_LINK_TEXT.match(candidate):
            return " ".join(candidate.split())[:500]
    return file_name
