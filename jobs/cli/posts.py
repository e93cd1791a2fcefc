"""`evidence posts`: a quick look at the posts the post sources captured."""

from __future__ import annotations

from typing import Annotated

import typer
from rich import box
from rich.table import Table

from jobs.cli.common import JsonOption, out, print_json, safe, state, warn

posts_app = typer.Typer(
    help="Platform posts captured by the watchlists (capture with: evidence crawl tiktok|x).",
    no_args_is_help=True,
)


@posts_app.command("list")
def posts_list(
    platform: Annotated[str | None, typer.Option("--platform", help="tiktok or x.")] = None,
    author: Annotated[
        str | None, typer.Option("--author", help="Only this account (@name).")
    ] = None,
    status: Annotated[
        str | None,
        typer.Option("--status", help="available, removed, geo_blocked, account_suspended, …"),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """Posts, most recently captured first."""
    from jobs.posts import posts_list as list_posts

    rows, total = list_posts(
        state.settings, platform=platform, author=author, status=status, limit=limit
    )
    if as_json:
        print_json({"total": total, "posts": rows})
        return
    table = Table(title=f"{len(rows)} of {total} post(s)", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("post", no_wrap=True)  # ids are copied whole
    for column in ("author", "status", "since", "versions", "last capture"):
        table.add_column(column, overflow="fold")
    for r in rows:
        table.add_row(
            f"{r['platform']}:{safe(r['post_id'])}",
            safe(r["author"] or "-"),
            r["status"],
            r["status_since"][:16],
            str(r["versions"]),
            r["last_captured_at"][:16],
        )
    out.print(table)


@posts_app.command("show")
def posts_show(
    post: Annotated[str, typer.Argument(help="The post: platform:id (tiktok:73…) or its id.")],
    as_json: JsonOption = False,
) -> None:
    """One post: its fields, its versions (what changed, which snapshot showed it), its
    status (removed, geo-blocked, … since when) and its counts over time."""
    from jobs.posts import posts_show as show

    detail = show(state.settings, post)
    for warning in detail.warnings:
        warn(warning)
    if as_json:
        print_json(detail.to_dict())
        return
    s = detail.summary
    out.print(f"[bold]{s['platform']}:{safe(s['post_id'])}[/] by {safe(s['author'] or '?')}")
    out.print(f"{safe(s['url'] or '')}")
    out.print(f"status {s['status']} since {s['status_since'][:19]}")
    for key in ("created_at", "text", "hashtags", "labels", "media"):
        value = detail.fields.get(key)
        if value not in (None, [], {}, ""):
            out.print(f"  {key}: {safe(value)}", soft_wrap=True)
    for v in detail.versions:
        changed = ", ".join(v["changed"]) or "first capture"
        out.print(
            f"  version {v['version']} ({v['status']}) {v['captured_at'][:19]}: {safe(changed)}; "
            f"snapshot {v['snapshot'][:16]}"
        )
    for c in detail.counts:
        figures = ", ".join(
            f"{k} {c[k]:,}"
            for k in ("views", "likes", "shares", "comments", "saves", "reposts")
            if c.get(k) is not None
        )
        out.print(f"  {c['captured_at'][:19]}: {figures}")
