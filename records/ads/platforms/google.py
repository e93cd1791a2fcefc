"""Google's political-ads transparency bundle → ``AdRecord``.

The payload is the bundle as archived (a zip of CSV files); the ads are the rows of
``google-political-ads-creative-stats.csv`` whose ``Regions`` name one of the regions asked
for (the snapshot's ``ads`` block says which: ``"regions": ["EU"]`` by default, where "EU"
stands for the region code "EU" and every member state). The CSV is streamed from the zip,
so that only the selected rows are held.

Spend comes from the EUR columns (``Spend_Range_Min_EUR``/``Spend_Range_Max_EUR``), or, when
they are absent or empty, from the currency of the ad's country, else USD; the other
currencies' ranges (Google's conversions of the same bucket) are kept in
``extra["spend_ranges"]``. ``Impressions`` buckets ("≤ 10k", "10k-100k", "> 10M", and the
finer "10000-15000" of newer files) become bounds with the bucket kept as ``original``.
A column this module does not know is kept per ad in ``extra["unknown_columns"]`` (its
non-empty values); a known column that is missing leaves its field empty. When one ad id has
several selected rows (Google lists a creative once per advertiser or region at times), the
first row in file order makes the record and the others are kept in ``extra["other_rows"]``.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections.abc import Iterator
from datetime import date
from typing import Any

from records.ads.parse import Payload
from records.ads.ranges import range_fields, spend_fields
from schemas.ad import AdRecord

CREATIVE_STATS = "google-political-ads-creative-stats.csv"
EU_MEMBERS = frozenset(
    {
        *("AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU"),
        *("IE", "IT", "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK"),
    }
)
# The currency a country's spend is best read in when the EUR columns are missing.
LOCAL_CURRENCY = {
    "BG": "BGN",
    "CZ": "CZK",
    "DK": "DKK",
    "HU": "HUF",
    "PL": "PLN",
    "RO": "RON",
    "SE": "SEK",
    "HR": "EUR",
}
KNOWN = frozenset(
    {
        "ad_id",
        "ad_url",
        "ad_type",
        "regions",
        "advertiser_id",
        "advertiser_name",
        "ad_campaigns_list",
        "date_range_start",
        "date_range_end",
        "num_of_days",
        "impressions",
        "spend_usd",
        "first_served_timestamp",
        "last_served_timestamp",
        "age_targeting",
        "gender_targeting",
        "geo_targeting_included",
        "geo_targeting_excluded",
        "is_funded_by_google_ad_grants",
    }
)
_SPEND = re.compile(r"^spend_range_(min|max)_([a-z]{3})$")


def wanted_regions(regions: Any) -> frozenset[str]:
    """The region codes a row may name to be selected: "EU" means "EU" and every member
    state; EL (the EU's code for Greece) is GR as Google writes it."""
    codes: set[str] = set()
    for region in regions or ["EU"]:
        code = str(region).strip().upper()
        code = "GR" if code == "EL" else code
        if code == "EU":
            codes |= EU_MEMBERS | {"EU"}
        elif code:
            codes.add(code)
    return frozenset(codes)


def creative_rows(bundle: zipfile.ZipFile) -> Iterator[dict[str, str]]:
    """The rows of creative-stats, streamed (ValueError if the bundle has none)."""
    member = next(
        (n for n in bundle.namelist() if n.lower().rsplit("/", 1)[-1] == CREATIVE_STATS), None
    )
    if member is None:
        raise ValueError(f"the bundle has no {CREATIVE_STATS} (members: {bundle.namelist()[:12]})")
    with bundle.open(member) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
        yield from csv.DictReader(text, strict=True)


def _split(value: str | None) -> list[str]:
    # Google joins several values with ", " and writes a place's hierarchy with a bare ","
    # ("Berlin,Germany, Hamburg,Germany").
    return [v.strip() for v in (value or "").split(", ") if v.strip()]


def _date(value: str | None) -> date | None:
    text = (value or "").strip()
    try:
        return date.fromisoformat(text[:10]) if text else None
    except ValueError:
        return None


def _int(value: str | None) -> int | None:
    text = (value or "").strip().replace(",", "")
    return int(float(text)) if re.fullmatch(r"\d+(\.0+)?", text) else None


def _impressions(value: str | None) -> dict[str, Any] | None:
    text = (value or "").strip()
    if not text:
        return None
    try:
        return range_fields(text)
    except ValueError:
        return {"original": text}  # an unknown bucket, kept as written


def normalise(payload: Payload) -> Iterator[AdRecord]:
    """The ads of the bundle whose regions were asked for (the ``ads`` block's ``regions``)."""
    try:
        bundle = zipfile.ZipFile(io.BytesIO(payload.body))
    except zipfile.BadZipFile as exc:
        raise ValueError(f"the Google bundle is not a zip file: {exc}") from None
    wanted = wanted_regions((payload.ads or {}).get("regions"))
    selected: dict[str, list[dict[str, str]]] = {}
    try:
        with bundle:
            for row in creative_rows(bundle):
                lowered = {(k or "").strip().lower(): (v or "") for k, v in row.items()}
                regions = {r.strip().upper() for r in lowered.get("regions", "").split(",")}
                if not regions & wanted or not lowered.get("ad_id", "").strip():
                    continue
                selected.setdefault(lowered["ad_id"].strip(), []).append(row)
    except (csv.Error, zipfile.BadZipFile, UnicodeDecodeError, EOFError) as exc:
        raise ValueError(f"{CREATIVE_STATS} cannot be read: {exc}") from None
    for ad_id, rows in selected.items():
        yield _record(ad_id, rows)


def _record(ad_id: str, rows: list[dict[str, str]]) -> AdRecord:
    raw = rows[0]
    row = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items()}
    regions = [r.strip().upper() for r in row.get("regions", "").split(",") if r.strip()]
    countries = [r for r in regions if r != "EU"]
    ranges: dict[str, dict[str, str]] = {}
    unknown: dict[str, str] = {}
    for name, value in raw.items():
        key = (name or "").strip().lower()
        if m := _SPEND.match(key):
            ranges.setdefault(m.group(2).upper(), {})[m.group(1)] = (value or "").strip()
        elif key not in KNOWN and (value or "").strip():
            unknown[name] = value
    currency = "EUR"
    if not (ranges.get("EUR", {}).get("min") or ranges.get("EUR", {}).get("max")):
        local = next((LOCAL_CURRENCY[c] for c in countries if c in LOCAL_CURRENCY), "USD")
        currency = local if ranges.get(local) else next(iter(ranges), "USD")
    chosen = ranges.get(currency, {})
    spend = spend_fields(chosen.get("min"), chosen.get("max"), currency) if chosen else None
    extra: dict[str, Any] = {}
    others = {
        c: f"{r.get('min', '')}-{r.get('max', '')}"
        for c, r in sorted(ranges.items())
        if c != currency and (r.get("min") or r.get("max"))
    }
    if others:
        extra["spend_ranges"] = others
    for key, name in (
        ("first_served_timestamp", "first_served"),
        ("last_served_timestamp", "last_served"),
        ("spend_usd", "spend_usd"),  # deprecated by Google, empty in today's files
    ):
        if row.get(key):
            extra[name] = row[key]
    if (days := _int(row.get("num_of_days"))) is not None:
        extra["num_of_days"] = days
    if campaigns := [c.strip() for c in row.get("ad_campaigns_list", "").split(",") if c.strip()]:
        extra["campaigns"] = campaigns
    grants = row.get("is_funded_by_google_ad_grants", "").lower()
    if grants in ("yes", "true"):
        # "No" is what an absent column also means: only the exception is recorded, so that
        # the column's arrival in a newer file does not read as a change of every ad.
        extra["google_ad_grants"] = True
    if unknown:
        extra["unknown_columns"] = unknown
    if len(rows) > 1:
        extra["other_rows"] = [{k: v for k, v in r.items() if v} for r in rows[1:]]
    # Plain dicts, validated once as a whole (pydantic-core builds the nested models).
    return AdRecord.model_validate(
        {
            "platform": "google",
            "ad_id": ad_id,
            "ad_type": row.get("ad_type") or None,
            "advertiser_id": row.get("advertiser_id") or None,
            "advertiser_name": row.get("advertiser_name") or None,
            "first_shown": _date(row.get("date_range_start")),
            "last_shown": _date(row.get("date_range_end")),
            "spend": spend,
            "impressions": _impressions(row.get("impressions")),
            "targeting": {
                "ages": _split(row.get("age_targeting")),
                "genders": _split(row.get("gender_targeting")),
                "locations_included": _split(row.get("geo_targeting_included")),
                "locations_excluded": _split(row.get("geo_targeting_excluded")),
            },
            "countries": countries,
            "snapshot_url": row.get("ad_url") or None,
            "extra": extra,
        }
    )
