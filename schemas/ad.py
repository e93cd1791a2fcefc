"""Political and issue ads, normalised across the ad libraries (Meta, TikTok, Google, X).

One model for every platform: what each library calls a funding entity, a payer or "paid for
by" lands in the same fields; ranges ("10K-15K", "≤ 10k", lower and upper bounds as strings)
become integer bounds with the original text kept; what a platform sends that this model has
no field for is kept in ``extra`` rather than dropped.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

AdStatus = Literal["active", "inactive", "removed", "unknown"]
SPECIAL_CATEGORIES = (
    "political_opinions",
    "religious_beliefs",
    "health",
    "sex_life_or_sexual_orientation",
    "racial_or_ethnic_origin",
    "trade_union_membership",
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Bounds(_Model):
    """A number a library gives as a range or a bucket; ``original`` is its text as sent."""

    lower: int | None = None
    upper: int | None = None  # None: open-ended ("> 1M")
    original: str | None = None


class Spend(Bounds):
    currency: str | None = None


class Delivery(_Model):
    """One cell of a reach or impressions breakdown (country, age band, gender)."""

    country: str | None = None
    age: str | None = None
    gender: str | None = None
    share: float | None = None  # fraction of the ad's delivery, 0..1
    reach: Bounds | None = None


class Targeting(_Model):
    ages: list[str] = Field(default_factory=list)
    genders: list[str] = Field(default_factory=list)
    locations_included: list[str] = Field(default_factory=list)
    locations_excluded: list[str] = Field(default_factory=list)
    interests: list[str] = Field(default_factory=list)
    audiences: list[str] = Field(default_factory=list)  # custom, lookalike, retargeting lists
    languages: list[str] = Field(default_factory=list)
    other: dict[str, Any] = Field(default_factory=dict)


class SpecialCategoryFlag(_Model):
    """A GDPR Art. 9 category a term of the targeting matched, and how it was found."""

    category: str  # one of SPECIAL_CATEGORIES
    term: str  # the vocabulary term that matched
    value: str  # the targeting value it matched in
    field: str  # interests, audiences, ...
    language: str  # de, en
    vocabulary: str  # version of records/ads/special_categories.toml


class Creative(_Model):
    bodies: list[str] = Field(default_factory=list)
    titles: list[str] = Field(default_factory=list)
    descriptions: list[str] = Field(default_factory=list)
    captions: list[str] = Field(default_factory=list)
    links: list[str] = Field(default_factory=list)
    media: list[dict[str, Any]] = Field(default_factory=list)  # kind, url, …


class AdRecord(_Model):
    """One ad as one library showed it at one time."""

    platform: Literal["meta", "tiktok", "google", "x"]
    ad_id: str = Field(min_length=1, max_length=200)
    ad_type: str | None = None
    advertiser_id: str | None = None
    advertiser_name: str | None = None
    page_id: str | None = None
    page_name: str | None = None
    funding_entity: str | None = None  # "paid for by", "bylines"
    beneficiaries: list[str] = Field(default_factory=list)
    payers: list[str] = Field(default_factory=list)
    first_shown: date | None = None
    last_shown: date | None = None
    status: AdStatus = "unknown"
    removal_reason: str | None = None
    spend: Spend | None = None
    impressions: Bounds | None = None
    reach: Bounds | None = None
    reach_by_country: dict[str, Bounds] = Field(default_factory=dict)
    demographics: list[Delivery] = Field(default_factory=list)
    targeting: Targeting = Field(default_factory=Targeting)
    special_categories: list[SpecialCategoryFlag] = Field(default_factory=list)
    creative: Creative = Field(default_factory=Creative)
    languages: list[str] = Field(default_factory=list)
    countries: list[str] = Field(default_factory=list)  # where it was delivered
    snapshot_url: str | None = None  # the library's page of the creative (secrets redacted)
    extra: dict[str, Any] = Field(default_factory=dict)  # fields or columns not mapped above
