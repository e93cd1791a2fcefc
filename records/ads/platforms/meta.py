"""Meta Ad Library API answers (``ads_archive`` pages) → ``AdRecord``.

A page is ``{"data": [ad, ...], "paging": {...}}``; each ad carries the fields the query
asked for (and sometimes others: schema drift). Ranges arrive as strings
(``{"lower_bound": "1000", "upper_bound": "1999"}``, the top bucket without an upper bound),
shares as strings (``"0.27"``), ``eu_total_reach`` and the reach breakdown as numbers. What
the model has no field for is kept under ``extra``, unknown fields as sent.

Status: Meta's API has no status field. An ad of a query for ACTIVE or INACTIVE ads has that
status; otherwise an ad with ``ad_delivery_stop_time`` is inactive and one without is active.
Removed ads are not marked by the API: they vanish, which the index notices per query.

A page that is not JSON or has no ``data`` list, or an ad without ``id`` or with a range
that is not one, raises ``ValueError``: the parse step reports the snapshot unparseable.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import date, datetime
from typing import Any

from records.ads.parse import Payload, gc_paused
from records.ads.ranges import bounds_fields, range_fields, spend_fields
from schemas.ad import AdRecord

# Fields mapped to the model (everything else of an ad lands in ``extra``).
MAPPED = frozenset(
    {
        "id",
        "ad_creative_bodies",
        "ad_creative_link_captions",
        "ad_creative_link_descriptions",
        "ad_creative_link_titles",
        "ad_delivery_start_time",
        "ad_delivery_stop_time",
        "ad_snapshot_url",
        "age_country_gender_reach_breakdown",
        "beneficiary_payers",
        "bylines",
        "currency",
        "demographic_distribution",
        "eu_total_reach",
        "impressions",
        "languages",
        "page_id",
        "page_name",
        "spend",
        "target_ages",
        "target_gender",
        "target_locations",
    }
)
GENDERS = {"all": ["all"], "women": ["female"], "men": ["male"], "female": ["female"]}
GENDERS |= {"male": ["male"], "unknown": ["unknown"]}
_TOKEN = re.compile(r"([?&]access_token=)(?!REDACTED(?:&|$))[^&#\s]+")


def normalise(payload: Payload) -> Iterator[AdRecord]:
    """The ads of one archived ``ads_archive`` answer."""
    # The whole page at once, parsed JSON included, with the collector paused (see
    # gc_paused); never yield with it off, or the caller's code would run so too.
    with gc_paused():
        records = _page(payload)
    yield from records


def _page(payload: Payload) -> list[AdRecord]:
    try:
        data = json.loads(payload.body)
    except ValueError as exc:
        raise ValueError(f"the answer is not JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise ValueError("not an ads_archive answer: no `data` list")
    query = payload.ads.get("query") or {}
    return [_numbered(position, item, query) for position, item in enumerate(data["data"], 1)]


def _numbered(position: int, item: Any, query: dict[str, Any]) -> AdRecord:
    if not isinstance(item, dict):
        raise ValueError(f"ad {position} of the page is not an object")
    try:
        return ad_record(item, query)
    except ValueError as exc:
        raise ValueError(f"ad {item.get('id') or position}: {exc}") from None


def ad_record(ad: dict[str, Any], query: dict[str, Any]) -> AdRecord:
    """One ``ads_archive`` ad as an ``AdRecord`` (``query``: what the page was asked for)."""
    ad_id = str(ad.get("id") or "").strip()
    if not ad_id:
        raise ValueError("no id")
    # The record is built as plain dicts and validated once (pydantic-core builds the ~80
    # nested cells far faster than one model constructor call per cell).
    breakdown = _reach_breakdown(ad.get("age_country_gender_reach_breakdown"))
    totals: dict[str, int] = {}
    for cell in breakdown:
        country, reach = cell["country"], cell["reach"]
        if country and reach is not None and reach["lower"] is not None:
            totals[country] = totals.get(country, 0) + reach["lower"]
    reach_by_country = {
        country: {"lower": total, "upper": total, "original": str(total)}
        for country, total in totals.items()
    }
    countries = list(reach_by_country)
    if len(query.get("countries") or []) == 1 and query["countries"][0] != "ALL":
        # Asked for ads that reached this one country: every ad of the answer did.
        countries = list(dict.fromkeys([*countries, query["countries"][0]]))
    payers = ad.get("beneficiary_payers") or []
    spend = ad.get("spend") or {}
    impressions = ad.get("impressions") or {}
    return AdRecord.model_validate(
        {
            "platform": "meta",
            "ad_id": ad_id,
            "ad_type": query.get("ad_type"),
            "advertiser_id": _text(ad.get("page_id")),
            "advertiser_name": _text(ad.get("page_name")),
            "page_id": _text(ad.get("page_id")),
            "page_name": _text(ad.get("page_name")),
            "funding_entity": _joined(ad.get("bylines")),
            "beneficiaries": _unique(p.get("beneficiary") for p in payers if isinstance(p, dict)),
            "payers": _unique(p.get("payer") for p in payers if isinstance(p, dict)),
            "first_shown": _date(ad.get("ad_delivery_start_time")),
            "last_shown": _date(ad.get("ad_delivery_stop_time")),
            "status": _status(ad, query),
            "spend": spend_fields(
                spend.get("lower_bound"), spend.get("upper_bound"), ad.get("currency")
            )
            if isinstance(spend, dict)
            else None,
            "impressions": bounds_fields(
                impressions.get("lower_bound"), impressions.get("upper_bound")
            )
            if isinstance(impressions, dict)
            else None,
            "reach": range_fields(ad.get("eu_total_reach")),
            "reach_by_country": reach_by_country,
            "demographics": _distribution(ad.get("demographic_distribution")) + breakdown,
            "targeting": _targeting(ad),
            "creative": {
                "bodies": _strings(ad.get("ad_creative_bodies")),
                "titles": _strings(ad.get("ad_creative_link_titles")),
                "descriptions": _strings(ad.get("ad_creative_link_descriptions")),
                "captions": _strings(ad.get("ad_creative_link_captions")),
            },
            "languages": _strings(ad.get("languages")),
            "countries": countries,
            "snapshot_url": _redacted(ad.get("ad_snapshot_url")),
            "extra": _extra(ad),
        }
    )


def _status(ad: dict[str, Any], query: dict[str, Any]) -> str:
    asked = query.get("ad_active_status")
    if asked == "ACTIVE":
        return "active"
    if asked == "INACTIVE":
        return "inactive"
    return "inactive" if ad.get("ad_delivery_stop_time") else "active"


def _targeting(ad: dict[str, Any]) -> dict[str, Any]:
    ages = _strings(ad.get("target_ages"))
    gender = ad.get("target_gender")
    included, excluded, other = [], [], {}
    obfuscated = 0
    for location in ad.get("target_locations") or []:
        if not isinstance(location, dict):
            continue
        name = _text(location.get("name"))
        if name:
            (excluded if location.get("excluded") else included).append(name)
        obfuscated += int(location.get("num_obfuscated") or 0)
    if ad.get("target_locations"):
        other["target_locations"] = ad["target_locations"]  # types and obfuscation as sent
    if obfuscated:
        other["locations_obfuscated"] = obfuscated
    return {
        # Meta gives the youngest and oldest age targeted: ["18", "65+"] is one band.
        "ages": ["-".join(ages)] if len(ages) == 2 else ages,
        "genders": GENDERS.get(str(gender).strip().lower(), [str(gender)]) if gender else [],
        "locations_included": included,
        "locations_excluded": excluded,
        "other": other,
    }


def _distribution(cells: Any) -> list[dict[str, Any]]:
    return [
        {
            "age": _text(cell.get("age")),
            "gender": _text(cell.get("gender")),
            "share": _share(cell.get("percentage")),
        }
        for cell in cells or []
        if isinstance(cell, dict)
    ]


def _reach_breakdown(countries: Any) -> list[dict[str, Any]]:
    found = []
    for entry in countries or []:
        if not isinstance(entry, dict):
            continue
        country = _text(entry.get("country"))
        for cell in entry.get("age_gender_breakdowns") or []:
            if not isinstance(cell, dict):
                continue
            age = _text(cell.get("age_range"))
            for gender in ("male", "female", "unknown"):
                if (value := cell.get(gender)) is not None:
                    # Meta sends these as integers (dozens per ad): range_fields's own answer
                    # for one, without the call.
                    reach = (
                        {"lower": value, "upper": value, "original": str(value)}
                        if type(value) is int
                        else range_fields(value)
                    )
                    found.append({"country": country, "age": age, "gender": gender, "reach": reach})
    return found


def _extra(ad: dict[str, Any]) -> dict[str, Any]:
    extra = {k: v for k, v in ad.items() if k not in MAPPED}
    if isinstance(extra.get("delivery_by_region"), list):
        # A share per region (the model's breakdowns have no region): parsed, names kept.
        extra["delivery_by_region"] = [
            {"region": c.get("region"), "share": _share(c.get("percentage"))}
            for c in extra["delivery_by_region"]
            if isinstance(c, dict)
        ]
    size = extra.get("estimated_audience_size")
    if isinstance(size, dict):
        extra["estimated_audience_size"] = bounds_fields(
            size.get("lower_bound"), size.get("upper_bound")
        )
    if ad.get("beneficiary_payers"):
        extra["beneficiary_payers"] = ad["beneficiary_payers"]  # which pair is current
    return extra


def _share(value: Any) -> float | None:
    if value in (None, ""):
        return None
    share = float(value)
    if not 0 <= share <= 1:
        raise ValueError(f"share {value!r} is not between 0 and 1")
    return share


def _date(value: Any) -> date | None:
    if value in (None, ""):
        return None
    text = str(value).strip()
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        pass
    try:  # "2025-01-16T08:00:00+0000"
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S%z").date()
    except ValueError:
        raise ValueError(f"not a date: {value!r}") from None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _joined(value: Any) -> str | None:
    if isinstance(value, list):
        return "; ".join(s for s in _strings(value)) or None
    return _text(value)


def _strings(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value if v is not None and str(v) != ""]


def _unique(values: Any) -> list[str]:
    return list(dict.fromkeys(t for v in values if (t := _text(v))))


def _redacted(url: Any) -> str | None:
    # The spider scrubs the token before archiving; an old or foreign snapshot might not.
    return _TOKEN.sub(r"\1REDACTED", url) if isinstance(url, str) and url else None
