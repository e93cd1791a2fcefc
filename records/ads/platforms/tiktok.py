"""TikTok Commercial Content API answers (ad query pages, ad details) → ``AdRecord``.

A query page is ``{"data": {"ads": [{"ad": …, "advertiser": …}], "has_more", "search_id"},
"error": {"code": "ok", …}}``; a detail answer ``{"data": {"ad": …, "advertiser": …,
"ad_group": {"targeting_info": …}}, …}``. The spider archives a page together with its ads'
details and lists the ads whose detail is there (``details`` in the ``ads`` block): those are
taken from their detail answer (a superset of the page's fields), the others from the page.

The documentation contradicts itself; every variant is read: dates as integers or strings
(YYYYMMDD, also ISO dates and epoch seconds or milliseconds), ``unique_users_seen`` or
``unique_user_seen``, ``paid_for_by`` or ``paid_by``, ``targeting_info`` or ``target``,
``country`` or ``country_code``, ids as numbers or strings, and flat items as well as
``{"ad", "advertiser"}`` pairs.

Versions should change when the ad does, not when TikTok's CDN signs its links anew: media
URLs are kept without their query string (the signed, expiring part; the archived answer
has it whole), and the advertiser's ``follower_count`` and ``avatar_url`` (which change every
day) are left out. Everything else not mapped is kept in ``extra``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from records.ads.parse import Payload
from records.ads.ranges import range_fields
from schemas.ad import AdRecord

AD_MAPPED = frozenset(
    {
        "id",
        "first_shown_date",
        "last_shown_date",
        "status",
        "status_statement",
        "videos",
        "image_urls",
        "reach",
        "title",
        "external_url",
        "rejection_info",
    }
)
ADVERTISER_MAPPED = frozenset({"business_id", "business_name", "paid_for_by", "paid_by"})
VOLATILE = frozenset({"follower_count", "avatar_url"})  # change daily: not versioned
TARGETING_MAPPED = frozenset(
    {"age", "gender", "country", "country_code", "interest", "interests", "audience_targeting"}
    | {"number_of_users_targeted"}
    | {"language", "languages"}
)
REMOVED = ("removed", "rejected", "deleted", "taken_down", "violat")


def normalise(payload: Payload) -> Iterator[AdRecord]:
    """The ads of one archived answer: a query page or an ad's detail."""
    try:
        answer = json.loads(payload.body)
    except ValueError as exc:
        raise ValueError(f"the answer is not JSON: {exc}") from None
    if not isinstance(answer, dict):
        raise ValueError("the answer is not a JSON object")
    error = answer.get("error")
    if isinstance(error, dict) and str(error.get("code") or "ok").lower() != "ok":
        raise ValueError(f"the answer is an error: {error.get('code')}: {error.get('message')}")
    data = answer.get("data")
    if not isinstance(data, dict):
        raise ValueError("no `data` object in the answer")
    query = payload.ads.get("query") or {}
    if "ads" in data:
        if not isinstance(data["ads"], list):
            raise ValueError("`data.ads` is not a list")
        detailed = {str(i) for i in payload.ads.get("details") or []}
        for position, item in enumerate(data["ads"], 1):
            record = _record(item, query, position)
            if record.ad_id not in detailed:  # else its detail answer, in the same snapshot
                yield record
    elif "ad" in data:
        yield _record(data, query, 1)
    else:
        raise ValueError("neither `data.ads` (a query page) nor `data.ad` (a detail answer)")


def _record(item: Any, query: dict[str, Any], position: int) -> AdRecord:
    if not isinstance(item, dict):
        raise ValueError(f"ad {position} is not an object")
    ad = item.get("ad") if isinstance(item.get("ad"), dict) else item
    try:
        return ad_record(
            ad,
            item.get("advertiser") if isinstance(item.get("advertiser"), dict) else {},
            item.get("ad_group") if isinstance(item.get("ad_group"), dict) else {},
            query,
        )
    except ValueError as exc:
        raise ValueError(f"ad {ad.get('id') or position}: {exc}") from None


def ad_record(
    ad: dict[str, Any],
    advertiser: dict[str, Any],
    group: dict[str, Any],
    query: dict[str, Any],
) -> AdRecord:
    """One TikTok ad (its ``ad``, ``advertiser`` and ``ad_group`` parts) as an ``AdRecord``."""
    ad_id = str(ad.get("id") or "").strip()
    if not ad_id:
        raise ValueError("no id")
    reach = ad.get("reach") if isinstance(ad.get("reach"), dict) else {}
    seen = _either(reach, "unique_users_seen", "unique_user_seen")
    by_country = _either(reach, "unique_users_seen_by_country", "unique_user_seen_by_country")
    # Built as plain dicts and validated once, in pydantic-core, as a whole.
    reach_by_country: dict[str, dict[str, Any]] = {}
    for country, value in (by_country or {}).items():
        bounds = range_fields(value)
        if bounds is not None:
            reach_by_country[str(country).upper()] = bounds
    targeting_info = _either(group, "targeting_info", "target")
    targeting = _targeting(targeting_info if isinstance(targeting_info, dict) else {})
    countries = list(reach_by_country) or list(targeting["locations_included"])
    if not countries and query.get("country") not in (None, "ALL"):
        countries = [query["country"]]  # the query asked for ads shown there
    paid = _either(advertiser, "paid_for_by", "paid_by")
    status, reason = _status(ad)
    return AdRecord.model_validate(
        {
            "platform": "tiktok",
            "ad_id": ad_id,
            "advertiser_id": _text(advertiser.get("business_id")),
            "advertiser_name": _text(advertiser.get("business_name")),
            "funding_entity": _text(paid),
            "beneficiaries": [n] if (n := _text(advertiser.get("business_name"))) else [],
            "payers": [p] if (p := _text(paid)) else [],
            "first_shown": _date(ad.get("first_shown_date")),
            "last_shown": _date(ad.get("last_shown_date")),
            "status": status,
            "removal_reason": reason,
            "reach": range_fields(seen),
            "reach_by_country": reach_by_country,
            "targeting": targeting,
            "creative": {
                "titles": [t] if (t := _text(ad.get("title"))) else [],
                "links": [u] if (u := _text(ad.get("external_url"))) else [],
                "media": _media(ad),
            },
            "languages": list(targeting["languages"]),
            "countries": countries,
            "extra": _extra(ad, advertiser, targeting_info, group),
        }
    )


def _either(mapping: Any, *keys: str) -> Any:
    if not isinstance(mapping, dict):
        return None
    return next((mapping[k] for k in keys if mapping.get(k) is not None), None)


def _status(ad: dict[str, Any]) -> tuple[str, str | None]:
    status = str(ad.get("status") or "").strip().lower()
    statement = _text(ad.get("status_statement"))
    rejection = ad.get("rejection_info")
    if rejection and not statement:
        statement = json.dumps(rejection, ensure_ascii=False, sort_keys=True)
    if any(word in status for word in REMOVED) or (
        statement and any(word in statement.lower() for word in REMOVED)
    ):
        return "removed", statement
    if status in ("active", "inactive"):
        return status, None
    if status in ("enable", "enabled", "delivering"):
        return "active", None
    if status in ("disable", "disabled", "paused", "ended"):
        return "inactive", None
    return "unknown", statement


def _targeting(info: dict[str, Any]) -> dict[str, Any]:
    countries = _either(info, "country", "country_code")
    if isinstance(countries, dict):  # {"DE": "1K-10K"}: targeted countries with sizes
        countries = list(countries)
    interests = _either(info, "interest", "interests")
    audiences = info.get("audience_targeting")
    other: dict[str, Any] = {}
    # Some answers say only whether a criterion was used ("Yes"/"No", true/false).
    if isinstance(interests, str | bool) and not isinstance(interests, list):
        other["interest"], interests = interests, []
    if isinstance(audiences, str | bool) and not isinstance(audiences, list):
        other["audience_targeting"], audiences = audiences, []
    for key, value in info.items():
        if key not in TARGETING_MAPPED and value not in (None, [], {}, ""):
            other[key] = value
    return {
        "ages": _flags(info.get("age")),
        "genders": _flags(info.get("gender")),
        "locations_included": _strings(countries),
        "interests": _strings(interests),
        "audiences": _strings(audiences),
        "languages": _strings(_either(info, "language", "languages")),
        "other": other,
    }


def _flags(value: Any) -> list[str]:
    """{"18-24": true, "13-17": false} → ["18-24"]; a list stays a list."""
    if isinstance(value, dict):
        return [str(k) for k, on in value.items() if on is True or str(on).lower() == "true"]
    return _strings(value)


def _media(ad: dict[str, Any]) -> list[dict[str, Any]]:
    media: list[dict[str, Any]] = []
    for video in ad.get("videos") or []:
        if isinstance(video, dict) and video.get("url"):
            entry = {"kind": "video", "url": _unsigned(video["url"])}
            if video.get("cover_image_url"):
                entry["cover_image_url"] = _unsigned(video["cover_image_url"])
            media.append(entry)
        elif isinstance(video, str):
            media.append({"kind": "video", "url": _unsigned(video)})
    for url in ad.get("image_urls") or []:
        if isinstance(url, str) and url:
            media.append({"kind": "image", "url": _unsigned(url)})
    return media


def _unsigned(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _extra(
    ad: dict[str, Any], advertiser: dict[str, Any], targeting: Any, group: dict[str, Any]
) -> dict[str, Any]:
    extra: dict[str, Any] = {k: v for k, v in ad.items() if k not in AD_MAPPED}
    for key, value in advertiser.items():
        if key not in ADVERTISER_MAPPED and key not in VOLATILE:
            extra[f"advertiser.{key}"] = value
    for key, value in group.items():
        if key not in ("targeting_info", "target"):
            extra[f"ad_group.{key}"] = value
    if isinstance(targeting, dict) and targeting.get("number_of_users_targeted") is not None:
        try:
            bounds = range_fields(targeting["number_of_users_targeted"])
        except ValueError:
            bounds = None
        extra["number_of_users_targeted"] = bounds or targeting["number_of_users_targeted"]
    return extra


def _date(value: Any) -> date | None:
    if value in (None, "", 0, "0"):
        return None
    text = str(value).strip()
    if text.isdigit():
        if len(text) == 8:
            return datetime.strptime(text, "%Y%m%d").date()
        seconds = int(text) / (1000 if len(text) >= 13 else 1)  # epoch ms or s
        return datetime.fromtimestamp(seconds, UTC).date()
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        raise ValueError(f"not a date: {value!r}") from None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _strings(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return [str(v) for v in value if v is not None and str(v) != ""]
    return [str(value)]
