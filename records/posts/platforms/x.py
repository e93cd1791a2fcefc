"""X posts: an archived capture of the `x` source → a ``PostRecord``.

What is read, and from where (docs/posts-x.md has the full table):

- ``post-data/tweet-result.json`` (the syndication JSON, as received): the post itself
  (``__typename`` "Tweet") or X's notice that it is gone (``TweetTombstone``), or nothing at
  all (the endpoint answered 404: the post does not exist or was deleted);
- ``post-data/tweet-result-latest.json``: the latest version of an edited post, fetched when
  the post's own answer said a newer version exists (``edit_control.edit_tweet_ids``);
- ``post-data/tweet-result-by-rest-id.json`` (guest GraphQL, when the source had a bearer):
  views, reposts, quotes, bookmarks, the author's followers and ``protected``,
  ``TweetUnavailable`` reasons and ``withheld_in_countries``;
- the rendered DOM (BeautifulSoup over lxml): the labels the JSON does not carry (state-
  affiliated media, paid partnership, ad), and the interstitial and the note as shown;
- the capture metadata's ``post`` block: the media facts (artifact, digest, ffprobe).

An edited post is one post: X keys an edit chain by the id it started with
(``edit_tweet_ids[0]``), and so does the record, whichever version's page was captured; the
text, media and counts are the latest version's, the chain is kept in ``extra["edit"]``, and
the edit shows as a new version of the record.

The state of a post is decided from X's own data, never from the HTTP status of the page:
tombstone texts and GraphQL reasons map to ``PostRecord.status`` (``status_for_notice``);
the platform's words are kept in ``status_detail``.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from bs4 import BeautifulSoup

from schemas.post import (
    PostAuthor,
    PostCounts,
    PostLabels,
    PostMedia,
    PostRecord,
    PostStatus,
)

DATA_ROLE = "post-data"
SYNDICATION = "tweet-result.json"
LATEST = "tweet-result-latest.json"
GRAPHQL = "tweet-result-by-rest-id.json"
TWITTER_EPOCH_MS = 1288834974657
# Ids above the last sequential one (4 November 2010) are snowflakes: they carry their time.
FIRST_SNOWFLAKE = 29_700_859_248
# Tombstone texts (and GraphQL reasons) → status, first match wins. X's wording (2023 to 2025):
# "This Post is from a suspended account.", "This Post was deleted by the Post author.",
# "This Post is unavailable.", "This Post violated the X Rules.", "This Post from @… has been
# withheld in Germany in response to a legal demand.", "You're unable to view this Post
# because this account owner limits who can view their Posts.", "Age-restricted adult
# content. This content might not be appropriate for people under 18 years old."
NOTICES: tuple[tuple[re.Pattern[str], PostStatus], ...] = (
    (re.compile(r"suspended", re.I), "account_suspended"),
    (re.compile(r"withheld|not available in your (country|location)", re.I), "geo_blocked"),
    (re.compile(r"limits who can view|protected|followers? only", re.I), "account_private"),
    (re.compile(r"age[- ]restricted|adult content|under 18|nsfw", re.I), "age_restricted"),
    (
        re.compile(
            r"deleted|doesn.t exist|does not exist|no longer (exists|available)|violated|"
            r"\bunavailable\b|removed",
            re.I,
        ),
        "removed",
    ),
)
REASONS: dict[str, PostStatus] = {
    "suspended": "account_suspended",
    "protected": "account_private",
    "nsfwloggedout": "age_restricted",
    "nsfw": "age_restricted",
    "ageverificationrequired": "age_restricted",
    "withheld": "geo_blocked",
    "deleted": "removed",
    "unavailable": "removed",
}


def status_for_notice(text: str | None) -> PostStatus:
    """The status X's notice (a tombstone text, an unavailability reason) stands for."""
    if not text:
        return "unknown"
    reason = REASONS.get(text.strip().lower())
    if reason is not None:
        return reason
    for pattern, status in NOTICES:
        if pattern.search(text):
            return status
    return "unknown"


def snowflake_time(post_id: str) -> datetime | None:
    """When X made an id, to the second as X's JSON gives times (None before snowflakes)."""
    number = int(post_id)
    if number < FIRST_SNOWFLAKE:
        return None
    moment = datetime.fromtimestamp(((number >> 22) + TWITTER_EPOCH_MS) / 1000, UTC)
    return moment.replace(microsecond=0)


def _json(data: bytes | None) -> Any:
    if not data:
        return None
    try:
        return json.loads(data)
    except ValueError:
        return None


def _time(value: Any) -> datetime | None:
    """X's times: ISO 8601 (syndication) or "Wed Feb 19 17:30:00 +0000 2025" (GraphQL)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        pass
    try:
        return datetime.strptime(value, "%a %b %d %H:%M:%S %z %Y").astimezone(UTC)
    except ValueError:
        return None


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _gql_result(data: Any) -> dict[str, Any] | None:
    """``data.tweetResult.result`` (unwrapping ``TweetWithVisibilityResults``), or None."""
    if not isinstance(data, dict):
        return None
    result = ((data.get("data") or {}).get("tweetResult") or {}).get("result")
    if isinstance(result, dict) and result.get("__typename") == "TweetWithVisibilityResults":
        result = result.get("tweet")
    return result if isinstance(result, dict) else None


def _text(node: Any) -> str | None:
    if node is None:
        return None
    text = " ".join(node.get_text(" ").split())
    return text or None


def _dom_labels(dom: bytes | None) -> dict[str, Any] | None:
    """What the page showed about the post's nature (data-testid markup; see the docs for
    which of it is X's and which the fixture's choice), or None without a DOM."""
    if not dom:
        return None
    soup = BeautifulSoup(dom, "lxml")
    found: dict[str, Any] = {"paid_partnership": False, "ad": False}
    state = soup.select_one('[data-testid="stateAffiliatedLabel"]')
    if state is not None:
        found["state_affiliated"] = _text(state)
    paid = soup.select_one('[data-testid="paidPartnershipLabel"]')
    if paid is not None:
        found["paid_partnership"] = True
        found["content_disclosure"] = _text(paid)
    promoted = soup.select_one('[data-testid="promotedIndicator"], [data-testid="adLabel"]')
    if promoted is not None:
        found["ad"] = True
    if soup.select_one('[data-testid="sensitiveMediaWarning"]') is not None:
        found["sensitive_interstitial"] = True
    note = soup.select_one('[data-testid="birdwatch-note-text"]')
    if note is not None:
        found["community_note"] = _text(note)
    notice = soup.select_one('[data-testid="error-detail"], [data-testid="empty_state"]')
    if notice is not None:
        found["notice"] = _text(notice)
    return found


def _media(block: dict[str, Any], tweet: dict[str, Any], capture: Any) -> list[PostMedia]:
    """The post's media: each kept file with its digest and ffprobe's facts; media that was
    not kept (download_media off, a failed fetch) with what the JSON says."""
    digests = {entry.name: entry for entry in capture.artifacts("media")}
    kept: list[PostMedia] = []
    facts = block.get("media")
    if isinstance(facts, list):
        for fact in facts:
            if not isinstance(fact, dict) or fact.get("kind") not in (
                "video",
                "image",
                "cover",
                "gif",
                "audio",
            ):
                continue
            probe = fact.get("ffprobe") if isinstance(fact.get("ffprobe"), dict) else {}
            entry = digests.get(fact.get("artifact") or "")
            duration = probe.get("duration")
            if duration is None and fact.get("duration_millis"):
                duration = fact["duration_millis"] / 1000
            kept.append(
                PostMedia(
                    kind=fact["kind"],
                    url=fact.get("url"),
                    artifact=entry.name if entry is not None else None,
                    sha256=entry.sha256 if entry is not None else None,
                    size=entry.size if entry is not None else None,
                    duration=duration,
                    width=probe.get("width"),
                    height=probe.get("height"),
                    codec=probe.get("codec"),
                    bitrate=_int(fact.get("bitrate")) or probe.get("bitrate"),
                )
            )
        return kept
    for item in tweet.get("mediaDetails") or []:
        if not isinstance(item, dict):
            continue
        kind = {"photo": "image", "video": "video", "animated_gif": "gif"}.get(item.get("type"))
        if kind is None:
            continue
        info = item.get("video_info") or {}
        variants = [v for v in info.get("variants") or [] if v.get("content_type") == "video/mp4"]
        best = max(variants, key=lambda v: int(v.get("bitrate") or 0), default=None)
        original = item.get("original_info") or {}
        kept.append(
            PostMedia(
                kind=kind,
                url=(best or {}).get("url") or item.get("media_url_https"),
                duration=(info.get("duration_millis") or 0) / 1000 or None,
                width=_int(original.get("width")),
                height=_int(original.get("height")),
                bitrate=_int((best or {}).get("bitrate")),
            )
        )
    return kept


def _post_url(block: dict[str, Any], handle: str | None, post_id: str) -> str | None:
    base = str(block.get("base_url") or "").rstrip("/")
    if not base:
        return block.get("url")
    if handle:
        return f"{base}/{handle}/status/{post_id}"
    return f"{base}/i/web/status/{post_id}"


def _gone(
    capture: Any, block: dict[str, Any], status: PostStatus, detail: str | None
) -> PostRecord:
    handle = block.get("handle")
    return PostRecord(
        platform="x",
        post_id=str(block["post_id"]),
        url=_post_url(block, handle, str(block["post_id"])),
        status=status,
        status_detail=detail,
        author=PostAuthor(handle=handle),
    )


def _notice(text: str | None) -> str | None:
    if not text:
        return None
    return re.sub(r"\s*Learn more\.?\s*$", "", text).strip() or text


def parse(capture: Any) -> PostRecord | None:
    """The post a capture of the `x` source holds (``records.posts.parse.PostCapture``), or
    None when it holds no data of X to read."""
    block = capture.post or capture.metadata.get("post") or {}
    if not block.get("post_id"):
        return None
    syndication = _json(capture.artifact(DATA_ROLE, SYNDICATION))
    latest = _json(capture.artifact(DATA_ROLE, LATEST))
    gql = _gql_result(_json(capture.artifact(DATA_ROLE, GRAPHQL)))
    dom = _dom_labels(capture.artifact("dom")) or {}
    syn_status = (block.get("syndication") or {}).get("status")
    kind = syndication.get("__typename") if isinstance(syndication, dict) else None

    # -- is the post there? -------------------------------------------------------------
    if kind == "TweetTombstone":
        text = ((syndication.get("tombstone") or {}).get("text") or {}).get("text")
        return _gone(capture, block, status_for_notice(text), _notice(text) or dom.get("notice"))
    reason = None
    if gql is not None and gql.get("__typename") in ("TweetUnavailable", "TweetTombstone"):
        reason = gql.get("reason") or (((gql.get("tombstone") or {}).get("text") or {}).get("text"))
        if kind != "Tweet":
            return _gone(capture, block, status_for_notice(reason), _notice(reason))
    if kind != "Tweet":
        if syn_status == 404:
            detail = dom.get("notice") or "This Post doesn't exist (syndication answered 404)"
            return _gone(capture, block, "removed", detail)
        return None  # an error answer: nothing of the post to read
    tweet = latest if isinstance(latest, dict) and latest.get("__typename") == "Tweet" else None
    tweet = tweet or syndication
    legacy = (gql or {}).get("legacy") or {}
    withheld = [str(c).upper() for c in legacy.get("withheld_in_countries") or []]
    country = str(block.get("country") or "").upper()

    # -- who, when, what ----------------------------------------------------------------
    edit = tweet.get("edit_control") or {}
    edit_ids = [str(i) for i in edit.get("edit_tweet_ids") or [] if str(i).isdigit()]
    shown_id = str(syndication.get("id_str") or block["post_id"])
    post_id = edit_ids[0] if edit_ids else shown_id
    user = tweet.get("user") or {}
    gql_user = (((gql or {}).get("core") or {}).get("user_results") or {}).get("result") or {}
    gql_user_legacy = gql_user.get("legacy") or {}
    handle = user.get("screen_name") or block.get("handle")
    if post_id == shown_id:
        created = _time(syndication.get("created_at"))
    else:
        created = snowflake_time(post_id)
    created = created or _time(tweet.get("created_at"))
    entities = tweet.get("entities") or {}
    counts = PostCounts(
        views=_int(((gql or {}).get("views") or {}).get("count")),
        likes=_int(tweet.get("favorite_count", legacy.get("favorite_count"))),
        comments=_int(tweet.get("conversation_count", legacy.get("reply_count"))),
        reposts=_int(legacy.get("retweet_count")),
        quotes=_int(legacy.get("quote_count")),
        saves=_int(legacy.get("bookmark_count")),
    )
    pivot = tweet.get("birdwatch_pivot") or {}
    note = (pivot.get("subtitle") or {}).get("text") if isinstance(pivot, dict) else None
    affiliation = ((gql_user.get("affiliates_highlighted_label") or {}).get("label") or {}).get(
        "description"
    )
    state = dom.get("state_affiliated")
    if state is None and affiliation and "state-affiliated" in affiliation.lower():
        state = affiliation
    sensitive = bool(tweet.get("possibly_sensitive")) or bool(dom.get("sensitive_interstitial"))
    labels = PostLabels(
        paid_partnership=dom.get("paid_partnership"),
        ad=dom.get("ad"),
        content_disclosure=dom.get("content_disclosure"),
        state_affiliated=state,
        sensitive_interstitial=sensitive,
        community_note=note or dom.get("community_note"),
    )
    extra: dict[str, Any] = {
        "links": [
            u.get("expanded_url") for u in entities.get("urls") or [] if u.get("expanded_url")
        ],
        "is_blue_verified": user.get("is_blue_verified"),
    }
    if user.get("verified_type"):
        extra["verified_type"] = user["verified_type"]
    if isinstance(pivot, dict) and (pivot.get("note") or {}).get("rest_id"):
        extra["community_note_id"] = pivot["note"]["rest_id"]
    if len(edit_ids) > 1:
        extra["edit"] = {
            "ids": edit_ids,
            "latest_id": edit_ids[-1],
            "edited_at": tweet.get("created_at")
            if str(tweet.get("id_str")) == edit_ids[-1]
            else None,
        }
    if withheld:
        extra["withheld_in_countries"] = withheld
    quoted = tweet.get("quoted_tweet") or {}
    record = PostRecord(
        platform="x",
        post_id=post_id,
        url=_post_url(block, handle, post_id),
        author=PostAuthor(
            id=user.get("id_str") or gql_user.get("rest_id"),
            handle=handle,
            name=user.get("name") or gql_user_legacy.get("name"),
            verified=bool(user.get("verified") or user.get("is_blue_verified")),
            private=gql_user_legacy.get("protected"),
            followers=_int(gql_user_legacy.get("followers_count")),
        ),
        created_at=created,
        text=tweet.get("text"),
        hashtags=[h.get("text") for h in entities.get("hashtags") or [] if h.get("text")],
        mentions=[
            m.get("screen_name")
            for m in entities.get("user_mentions") or []
            if m.get("screen_name")
        ],
        language=tweet.get("lang"),
        media=_media(block, tweet, capture),
        counts=counts,
        labels=labels,
        reply_to=tweet.get("in_reply_to_status_id_str") or legacy.get("in_reply_to_status_id_str"),
        quoted=quoted.get("id_str") or legacy.get("quoted_status_id_str"),
        extra=extra,
    )
    if country and country in withheld:
        record.status = "geo_blocked"
        record.status_detail = f"withheld in {country} (withheld_in_countries)"
    elif status_for_notice(reason) != "unknown":
        # The widget still has the post, but X's web client tells a logged-out reader it is
        # unavailable (an age gate, say): what a reader sees decides; the data is kept.
        record.status = status_for_notice(reason)
        record.status_detail = f"guest GraphQL: {_notice(reason)}"
    return record
