"""TikTok: a post capture of the `tiktok` source → ``PostRecord``.

Read from the snapshot's ``platform-data`` artifact (TikTok's embedded JSON as the server sent
it; the main document in the WARC if the artifact is missing), in either layout:

- ``__UNIVERSAL_DATA_FOR_REHYDRATION__`` → ``__DEFAULT_SCOPE__["webapp.video-detail"]``:
  ``statusCode``, ``statusMsg``, ``itemInfo.itemStruct``;
- ``SIGI_STATE`` (until 2023) → ``ItemModule[id]`` (``author`` is the handle there, the account in
  ``UserModule.users[handle]``), ``VideoPage.statusCode``.

The media come from the capture metadata (``post.media``: URL, artifact name, ffprobe) and the
manifest (digest and size of each artifact). What the page showed in words (the rendered DOM's
text: "Video derzeit nicht verfügbar") becomes ``status_detail`` with TikTok's status code.

Status codes (the mapping is a choice, documented in docs/posts-tiktok.md with its sources):
0 available (age-restricted when ``isContentClassified`` and no video); 10204 removed, or
geo-blocked when the message or the page names a country or region; 10216 removed (the post was
made private); 10222 account private; 10221 account suspended (banned); anything else unknown,
with the code kept.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from bs4 import BeautifulSoup

from schemas.post import PostAuthor, PostCounts, PostLabels, PostMedia, PostRecord

DATA_ROLE = "platform-data"
MEDIA_ROLE = "media"
UNIVERSAL = "__UNIVERSAL_DATA_FOR_REHYDRATION__"
_SCRIPT = re.compile(
    rb"<script\b[^>]*\bid\s*=\s*[\"'](__UNIVERSAL_DATA_FOR_REHYDRATION__|SIGI_STATE|"
    rb"sigi-persisted-data)[\"'][^>]*>(.*?)</script\s*>",
    re.DOTALL | re.IGNORECASE,
)
_HASHTAG = re.compile(r"#(\w[\w.]*)", re.UNICODE)
_MENTION = re.compile(r"@([A-Za-z0-9_.]+)")
_REGION = re.compile(r"\b(region|country|land|gebiet|location|standort)\b", re.IGNORECASE)

# status code -> (status, what it means, in the archive's words)
STATUS_CODES: dict[int, tuple[str, str]] = {
    10204: ("removed", "the post is not available"),
    10216: ("removed", "the post is private"),
    10222: ("account_private", "the account is private"),
    10221: ("account_suspended", "the account is banned"),
}
# What TikTok's pages say when they do not show a post (English and German interface).
SHOWN_PHRASES = (
    "video currently unavailable",
    "video derzeit nicht verfügbar",
    "video ist derzeit nicht verfügbar",
    "this video is unavailable",
    "dieses video ist nicht verfügbar",
    "this video is private",
    "dieses video ist privat",
    "this account is private",
    "dieses konto ist privat",
    "this account was banned",
    "dieses konto wurde gesperrt",
    "couldn't find this account",
    "not available in your country or region",
    "in deinem land oder deiner region nicht verfügbar",
    "this post may not be comfortable for some audiences",
    "möglicherweise nicht für alle zuschauer geeignet",
)


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or value is None or value == "":
        return None
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def _embedded(html: bytes) -> tuple[str, bytes] | None:
    found = {m.group(1).decode(): m.group(2) for m in _SCRIPT.finditer(html or b"")}
    for name in (UNIVERSAL, "SIGI_STATE", "sigi-persisted-data"):
        if name in found:
            return name, found[name].strip()
    return None


def platform_data(capture: Any) -> dict[str, Any] | None:
    """TikTok's JSON of the capture: the data artifact, else cut from the archived page."""
    info = (capture.post or {}).get("data") or {}
    raw = capture.artifact(DATA_ROLE, info.get("artifact")) if info.get("artifact") else None
    if raw is None:
        raw = capture.artifact(DATA_ROLE)
    if raw is None:
        for response in capture.responses:
            if (response.media_type or "").startswith("text/html") and response.status == 200:
                found = _embedded(response.body)
                if found is not None:
                    raw = found[1]
                    break
    if raw is None:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def read_item(
    data: dict[str, Any], post_id: str | None
) -> tuple[str, dict[str, Any], dict[str, Any], int | None, str]:
    """(layout, itemStruct, author, statusCode, statusMsg) from either layout."""
    scope = data.get("__DEFAULT_SCOPE__")
    if isinstance(scope, dict):
        detail = scope.get("webapp.video-detail") or {}
        item = (detail.get("itemInfo") or {}).get("itemStruct") or {}
        author = item.get("author") if isinstance(item.get("author"), dict) else {}
        return (
            "universal",
            item,
            author,
            _int(detail.get("statusCode")),
            detail.get("statusMsg") or "",
        )
    modules = data.get("ItemModule") or {}
    item = modules.get(post_id or "") or (next(iter(modules.values()), {}) if modules else {})
    page = data.get("VideoPage") or {}
    handle = item.get("author") if isinstance(item.get("author"), str) else None
    users = (data.get("UserModule") or {}).get("users") or {}
    author = dict(users.get(handle or "") or {})
    author.setdefault("uniqueId", handle)
    author.setdefault("nickname", item.get("nickname"))
    author.setdefault("id", item.get("authorId"))
    author.setdefault("secUid", item.get("authorSecId"))
    if "privateAccount" not in author and "authorPrivate" in item:
        author["privateAccount"] = item.get("authorPrivate")
    code = _int(page.get("statusCode"))
    return "sigi", item, author, 0 if code is None and item else code, page.get("statusMsg") or ""


def shown_message(dom: bytes | None) -> str | None:
    """The sentence a page showed instead of the post (from the rendered DOM), or None."""
    if not dom:
        return None
    soup = BeautifulSoup(dom, "lxml")
    for tag in soup(["script", "style", "noscript", "template"]):
        tag.decompose()
    for text in soup.stripped_strings:
        lowered = text.lower()
        if any(phrase in lowered for phrase in SHOWN_PHRASES):
            return " ".join(text.split())[:300]
    return None


def status_of(
    code: int | None, message: str, item: dict[str, Any], shown: str | None
) -> tuple[str, str | None]:
    """(status, status_detail) from TikTok's statusCode, its message and the page's words."""
    words = shown or message or None

    def detail(meaning: str) -> str:
        return f"{words or meaning} (statusCode {code})"

    if code is None:
        return "unknown", words or "the page's data has no statusCode"
    if code == 0:
        if not item:
            return "unknown", detail("statusCode 0 without the post's data")
        if item.get("isContentClassified") and not isinstance(item.get("video"), dict):
            return "age_restricted", detail("shown to logged-in adults only (isContentClassified)")
        return "available", None
    if code == 10204 and _REGION.search(f"{message} {shown or ''}"):
        return "geo_blocked", detail("not available in the capture's country or region")
    status, meaning = STATUS_CODES.get(code, ("unknown", "TikTok's status code is not known"))
    return status, detail(meaning)


def _origin(capture: Any) -> str | None:
    url = (capture.post or {}).get("url") or capture.metadata.get("requested_url") or ""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else None


def _requested(capture: Any) -> str | None:
    url = (capture.post or {}).get("url") or capture.metadata.get("requested_url")
    return url.split("?", 1)[0] if url else None


def _created(value: Any) -> datetime | None:
    seconds = _int(value)
    return datetime.fromtimestamp(seconds, UTC) if seconds else None


def _tags(item: dict[str, Any]) -> tuple[list[str], list[str]]:
    hashtags: list[str] = []
    mentions: list[str] = []
    for extra in item.get("textExtra") or []:
        if not isinstance(extra, dict):
            continue
        if extra.get("hashtagName"):
            hashtags.append(str(extra["hashtagName"]))
        elif extra.get("userUniqueId"):
            mentions.append(str(extra["userUniqueId"]))
    text = item.get("desc") or ""
    if not hashtags:
        hashtags = [c.get("title") for c in item.get("challenges") or [] if isinstance(c, dict)]
        hashtags = [h for h in hashtags if h] or _HASHTAG.findall(text)
    if not mentions:
        mentions = _MENTION.findall(text)
    return list(dict.fromkeys(hashtags)), list(dict.fromkeys(mentions))


def _counts(item: dict[str, Any]) -> PostCounts:
    # statsV2 writes every count as a string (exact beyond 2^53); stats as numbers.
    v2, v1 = item.get("statsV2") or {}, item.get("stats") or {}

    def count(key: str) -> int | None:
        value = _int(v2.get(key))
        return value if value is not None else _int(v1.get(key))

    return PostCounts(
        views=count("playCount"),
        likes=count("diggCount"),
        shares=count("shareCount"),
        comments=count("commentCount"),
        saves=count("collectCount"),
        reposts=_int(v2.get("repostCount")),
    )


def _labels(item: dict[str, Any]) -> PostLabels:
    aigc_keys = ("aigcLabelType", "AIGCDescription", "IsAigc", "isAigc")
    ai: bool | None = None
    if any(k in item for k in aigc_keys):
        ai = bool(
            (_int(item.get("aigcLabelType")) or 0) > 0
            or item.get("AIGCDescription")
            or item.get("IsAigc")
            or item.get("isAigc")
        )
    paid: bool | None = None
    if "brandedContentType" in item or "isPaidPartnership" in item:
        paid = bool(
            (_int(item.get("brandedContentType")) or 0) > 0 or item.get("isPaidPartnership")
        )
    warnings = [
        str(w.get("text"))
        for w in item.get("warnInfo") or []
        if isinstance(w, dict) and w.get("text")
    ]
    # An age gate (isContentClassified) is the post's status, not an interstitial label.
    sensitive: bool | None = None
    if "maskType" in item or "warnInfo" in item:
        sensitive = bool((_int(item.get("maskType")) or 0) > 0 or warnings)
    disclosure = item.get("AIGCDescription") or None
    return PostLabels(
        ai_generated=ai,
        paid_partnership=paid,
        ad=bool(item["isAd"]) if "isAd" in item else None,
        content_disclosure=str(disclosure) if disclosure else None,
        sensitive_interstitial=sensitive,
        other=warnings,
    )


def _media(capture: Any, item: dict[str, Any]) -> list[PostMedia]:
    listed = (capture.post or {}).get("media")
    entries = {e.name: e for e in capture.artifacts(MEDIA_ROLE)}
    media: list[PostMedia] = []
    if isinstance(listed, list):
        for facts in listed:
            if not isinstance(facts, dict) or facts.get("kind") not in (
                "video",
                "image",
                "cover",
                "audio",
                "gif",
            ):
                continue
            entry = entries.get(facts.get("artifact") or "")
            probe = facts.get("ffprobe") or {}
            media.append(
                PostMedia(
                    kind=facts["kind"],
                    # Without the query: its signature and expiry change with every look.
                    url=(facts.get("url") or "").split("?", 1)[0] or None,
                    artifact=entry.name if entry is not None else None,
                    sha256=entry.sha256 if entry is not None else None,
                    size=entry.size if entry is not None else None,
                    duration=probe.get("duration"),
                    width=probe.get("width"),
                    height=probe.get("height"),
                    codec=probe.get("codec"),
                    bitrate=probe.get("bitrate"),
                )
            )
        return media
    video = item.get("video") if isinstance(item.get("video"), dict) else None
    if video:  # the source ran without downloading media: what TikTok published about it
        url = video.get("playAddr") if isinstance(video.get("playAddr"), str) else None
        media.append(
            PostMedia(
                kind="video",
                url=url.split("?", 1)[0] if url else None,
                duration=float(video["duration"]) if _int(video.get("duration")) else None,
                width=_int(video.get("width")),
                height=_int(video.get("height")),
                codec=video.get("codecType") or None,
            )
        )
    return media


def parse(capture: Any) -> PostRecord | None:
    """The post a capture of the `tiktok` source shows (None if it holds no TikTok data)."""
    block = capture.post or {}
    data = platform_data(capture)
    if data is None:
        return None
    layout, item, author, code, message = read_item(data, block.get("post_id"))
    post_id = block.get("post_id") or (str(item["id"]) if item.get("id") else None)
    if not post_id:
        return None
    handle = author.get("uniqueId") or None
    origin = _origin(capture)
    url = f"{origin}/@{handle}/video/{post_id}" if origin and handle else _requested(capture)
    status, detail = status_of(code, message, item, shown_message(capture.artifact("dom")))
    if not item or status not in ("available", "age_restricted"):
        return PostRecord(
            platform="tiktok",
            post_id=str(post_id),
            url=url,
            status=status,  # type: ignore[arg-type]
            status_detail=detail,
            extra={"status_code": code, "layout": layout},
        )
    hashtags, mentions = _tags(item)
    music = item.get("music") if isinstance(item.get("music"), dict) else None
    poi = item.get("poi") if isinstance(item.get("poi"), dict) else {}
    language = item.get("textLanguage")
    extra: dict[str, Any] = {
        "status_code": code,
        "layout": layout,
        "author_sec_uid": author.get("secUid") or None,
        "location_created": item.get("locationCreated") or None,
        "diversification_labels": list(item.get("diversificationLabels") or []),
    }
    if poi:
        extra["poi"] = {
            k: poi.get(k) for k in ("id", "name", "address", "city", "country") if poi.get(k)
        }
    return PostRecord(
        platform="tiktok",
        post_id=str(post_id),
        url=url,
        status=status,  # type: ignore[arg-type]
        status_detail=detail,
        author=PostAuthor(
            id=str(author["id"]) if author.get("id") else None,
            handle=handle,
            name=author.get("nickname") or None,
            verified=author.get("verified") if isinstance(author.get("verified"), bool) else None,
            private=author.get("privateAccount")
            if isinstance(author.get("privateAccount"), bool)
            else None,
            # followers are left out: they change at every look and would make every capture
            # a new version (the count stays in the archived data)
        ),
        created_at=_created(item.get("createTime")),
        text=item.get("desc"),
        hashtags=hashtags,
        mentions=mentions,
        language=language if language and language not in ("un", "und") else None,
        location=poi.get("name") or item.get("locationCreated") or None,
        media=_media(capture, item) if status == "available" else [],
        counts=_counts(item),
        labels=_labels(item),
        music={
            "title": music.get("title"),
            "author": music.get("authorName"),
            "original": music.get("original"),
        }
        if music
        else None,
        extra={k: v for k, v in extra.items() if v not in (None, [], {})},
    )
