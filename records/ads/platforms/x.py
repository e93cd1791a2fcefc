"""X Ads Repository exports (CSV) → ``AdRecord``.

X publishes no column list for the export, and the columns have changed without notice. So
the mapping is by header name, loosely: names are compared without case, spaces,
punctuation or a leading "Targeting"/"Ad" word, against a table of the names known to carry
each fact (``COLUMNS``). A known column that is missing is tolerated (its field stays
empty); a column not in the table is never dropped: its non-empty values are kept per ad in
``extra["unknown_columns"]`` under the header as sent. An export with no rows (header only,
or zero bytes: X often answers so) yields no ads and is not an error; a file that is not
CSV, or has no column naming the ad, is (``ValueError``: the parse step reports the snapshot
as unparseable).

The snapshot's ``ads`` block names the account, country and date range asked for; they fill
what a row does not say (the country of delivery, the advertiser when the export omits it).
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Iterator
from datetime import date, datetime
from typing import Any

from records.ads.parse import Payload
from records.ads.ranges import range_fields
from schemas.ad import AdRecord

log = logging.getLogger(__name__)

# canonical field -> the header names (normalised by _key) that carry it
COLUMNS: dict[str, tuple[str, ...]] = {
    "ad_id": ("adid", "id", "promotedtweetid", "promotedpostid", "creativeid"),
    "tweet_id": ("tweetid", "postid"),
    "advertiser_name": ("advertisername", "advertiser", "accountname", "displayname"),
    "handle": ("advertiserhandle", "handle", "username", "screenname", "advertiserusername"),
    "advertiser_id": ("advertiseraccountid", "advertiserid", "accountid", "adsaccountid"),
    "advertiser_user_id": ("advertiseruserid", "userid"),
    "funding_entity": (
        "paidforby",
        "fundingentity",
        "fundedby",
        "paidby",
        "sponsor",
        "disclaimer",
    ),
    "payer": ("payer", "paymentby", "whopaid"),
    "beneficiary": ("beneficiary", "onbehalfof", "advertiseronbehalfof"),
    "start": ("startdate", "firstimpressiondate", "firstshown", "campaignstartdate", "start"),
    "end": ("enddate", "lastimpressiondate", "lastshown", "campaignenddate", "end"),
    "impressions": ("impressions", "totalimpressions", "impressionsrange", "impressioncount"),
    "reach": ("reach", "uniqueusers", "uniqueusersreached", "reachrange"),
    "spend": ("spend", "totalspend", "amountspent", "spendrange", "cost"),
    "currency": ("currency", "spendcurrency", "currencycode"),
    "country": ("country", "countrycode", "market"),
    "ages": ("age", "agerange", "ages", "agetargeting"),
    "genders": ("gender", "genders", "gendertargeting"),
    "locations": ("locations", "location", "locationsincluded", "includedlocations", "geo"),
    "locations_excluded": ("excludedlocations", "locationsexcluded", "excludedgeo"),
    "interests": ("interests", "interesttargeting", "interestcategories"),
    "keywords": ("keywords", "keywordtargeting"),
    "topics": ("conversationtopics", "topics", "conversations"),
    "lookalikes": ("followerlookalikes", "lookalikes", "followertargeting", "followers"),
    "audiences": ("customaudiences", "tailoredaudiences", "audiences", "audience"),
    "languages": ("languages", "language", "languagetargeting"),
    "devices": ("devices", "platforms", "os"),
    "text": ("tweettext", "posttext", "text", "adtext", "copy"),
    "url": ("tweeturl", "posturl", "adurl", "link"),
    "destination": ("destinationurl", "landingpage", "landingpageurl", "websiteurl"),
    "media": ("mediaurls", "media", "mediaurl", "images", "videos"),
    "status": ("status", "adstatus"),
    "removal_reason": ("removalreason", "reasonforremoval", "moderationreason"),
    "ad_type": ("adtype", "format", "adformat", "creativetype"),
}
_BY_KEY = {name: field for field, names in COLUMNS.items() for name in names}
_STATUS = {
    "active": "active",
    "running": "active",
    "live": "active",
    "inactive": "inactive",
    "paused": "inactive",
    "completed": "inactive",
    "ended": "inactive",
    "removed": "removed",
    "deleted": "removed",
    "suspended": "removed",
}


def _key(header: str) -> str:
    key = re.sub(r"[^a-z0-9]", "", header.strip().lstrip("\ufeff").lower())
    for prefix in ("targeting", "target"):
        if key.startswith(prefix) and key[len(prefix) :] in _BY_KEY:
            return key[len(prefix) :]
    return key


def column_map(header: list[str]) -> tuple[dict[str, str], list[str]]:
    """(canonical field -> header as sent, headers not known); the first header wins."""
    known: dict[str, str] = {}
    unknown: list[str] = []
    for name in header:
        field = _BY_KEY.get(_key(name))
        if field is None:
            unknown.append(name)
        elif field not in known:
            known[field] = name
        else:
            unknown.append(name)  # a second column for the same fact: kept, not guessed
    return known, unknown


def _split(value: str, *, commas: bool = False) -> list[str]:
    # Lists inside a cell: ";" or "|" between items; commas only where items never hold
    # one (age bands, genders), because "Berlin, DE" is one location.
    pattern = r"[;|\n]" if not commas else r"[;|\n,]"
    return [item.strip() for item in re.split(pattern, value or "") if item.strip()]


def _date(value: str) -> date | None:
    text = (value or "").strip()
    if not text:
        return None
    for pattern in ("%Y-%m-%d", "%d.%m.%Y", "%m/%d/%Y", "%Y/%m/%d"):
        try:
            return datetime.strptime(text[:10], pattern).date()
        except ValueError:
            continue
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).date()
    except ValueError:
        return None


def _amount(value: str) -> dict[str, Any] | None:
    """A count or amount: a range or bucket ("100-499", "≤ 10k"), or a number with cents."""
    text = (value or "").strip()
    if not text:
        return None
    if m := re.fullmatch(r"[€$£]?\s*(\d+)[.,](\d{1,2})\s*(?:[A-Z]{3})?", text):
        whole = int(m.group(1))
        upper = whole + (1 if int(m.group(2)) else 0)
        return {"lower": whole, "upper": upper, "original": text}
    try:
        return range_fields(text)
    except ValueError:
        return {"original": text}  # kept as sent; nothing guessed


def _cell(row: dict[str, str], known: dict[str, str], field: str) -> str:
    name = known.get(field)
    return (row.get(name) or "").strip() if name else ""


def normalise(payload: Payload) -> Iterator[AdRecord]:
    """The ads of one archived export (none for an empty one)."""
    text = _decode(payload.body)
    if not text.strip():
        return
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
        if not header or not any(h.strip() for h in header):
            return
        known, unknown = column_map(header)
        if "ad_id" not in known and "tweet_id" not in known:
            raise ValueError(
                f"X export: no column names the ad (Ad ID, Tweet ID …); header: {header[:12]}"
            )
        context = payload.ads or {}
        for number, cells in enumerate(reader, start=2):
            if not any(c.strip() for c in cells):
                continue
            if len(cells) != len(header):
                raise ValueError(
                    f"X export line {number}: {len(cells)} cells for {len(header)} columns"
                )
            row = dict(zip(header, cells, strict=True))
            ad = _record(row, known, unknown, context)
            if ad is None:
                log.warning("X export line %d: no ad id, row skipped", number)
                continue
            yield ad
    except csv.Error as exc:
        raise ValueError(f"X export is not well-formed CSV: {exc}") from None


def _decode(body: bytes) -> str:
    if body.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return body.decode("utf-16")
        except UnicodeDecodeError:
            pass
    else:
        try:
            text = body.decode("utf-8-sig")
        except UnicodeDecodeError:
            text = "\x00"
        if "\x00" not in text:
            return text
    raise ValueError("X export is not UTF-8 (or UTF-16) text")


def _record(
    row: dict[str, str], known: dict[str, str], unknown: list[str], context: dict[str, Any]
) -> AdRecord | None:
    ad_id = _cell(row, known, "ad_id") or _cell(row, known, "tweet_id")
    if not ad_id:
        return None
    account = str(context.get("account") or "")
    handle = _cell(row, known, "handle") or (account if account.startswith("@") else "")
    if handle and not handle.startswith("@"):
        handle = f"@{handle}"
    advertiser_id = _cell(row, known, "advertiser_id") or (
        account if account and not account.startswith("@") else None
    )
    currency = _cell(row, known, "currency") or None
    spend = _amount(_cell(row, known, "spend"))
    country = _cell(row, known, "country") or str(context.get("country") or "")
    lookalikes = [f"Follower look-alikes: {v}" for v in _split(_cell(row, known, "lookalikes"))]
    other: dict[str, Any] = {}
    for field in ("keywords", "topics", "devices"):
        values = _split(_cell(row, known, field))
        if values:
            other[field] = values
    extra: dict[str, Any] = {}
    tweet_id = _cell(row, known, "tweet_id")
    if tweet_id and tweet_id != ad_id:
        extra["tweet_id"] = tweet_id
    user_id = _cell(row, known, "advertiser_user_id")
    if user_id:
        extra["advertiser_user_id"] = user_id
    values = {name: row[name] for name in unknown if (row.get(name) or "").strip()}
    if values:
        extra["unknown_columns"] = values
    status_text = _cell(row, known, "status")
    media = [
        {"kind": "video" if "video" in url else "image", "url": url}
        for url in _split(_cell(row, known, "media"))
    ]
    funding = _cell(row, known, "funding_entity") or None
    # Plain dicts, validated once as a whole (pydantic-core builds the nested models).
    return AdRecord.model_validate(
        {
            "platform": "x",
            "ad_id": ad_id,
            "ad_type": _cell(row, known, "ad_type") or None,
            "advertiser_id": advertiser_id,
            "advertiser_name": _cell(row, known, "advertiser_name") or None,
            "page_id": user_id or None,
            "page_name": handle or None,
            "funding_entity": funding,
            "payers": _split(_cell(row, known, "payer")),
            "beneficiaries": _split(_cell(row, known, "beneficiary")),
            "first_shown": _date(_cell(row, known, "start")),
            "last_shown": _date(_cell(row, known, "end")),
            "status": _STATUS.get(status_text.lower(), "unknown") if status_text else "unknown",
            "removal_reason": _cell(row, known, "removal_reason") or None,
            "spend": {**spend, "currency": currency} if spend else None,
            "impressions": _amount(_cell(row, known, "impressions")),
            "reach": _amount(_cell(row, known, "reach")),
            "targeting": {
                "ages": _split(_cell(row, known, "ages"), commas=True),
                "genders": _split(_cell(row, known, "genders"), commas=True),
                "locations_included": _split(_cell(row, known, "locations")),
                "locations_excluded": _split(_cell(row, known, "locations_excluded")),
                "interests": _split(_cell(row, known, "interests")),
                "audiences": lookalikes + _split(_cell(row, known, "audiences")),
                "languages": _split(_cell(row, known, "languages")),
                "other": other,
            },
            "creative": {
                "bodies": [t for t in [_cell(row, known, "text")] if t],
                "links": _split(_cell(row, known, "destination")),
                "media": media,
            },
            "languages": _split(_cell(row, known, "languages")),
            "countries": [country] if country else [],
            "snapshot_url": _cell(row, known, "url") or None,
            "extra": extra,
        }
    )
