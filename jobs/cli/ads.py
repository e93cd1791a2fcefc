"""`evidence ads`: a quick look at the ads the ad-library sources indexed."""

from __future__ import annotations

from typing import Annotated

import typer
from rich import box
from rich.table import Table

from jobs.cli.common import JsonOption, out, print_json, safe, state, warn

ads_app = typer.Typer(
    help="Ads of the political-ad libraries (fetch with: evidence crawl meta-ads|tiktok-ads|"
    "google-ads|x-ads).",
    no_args_is_help=True,
)
AdArg = Annotated[str, typer.Argument(help="The ad: platform:id (meta:123…) or its id.")]


@ads_app.command("list")
def ads_list(
    platform: Annotated[
        str | None, typer.Option("--platform", help="meta, tiktok, google, x.")
    ] = None,
    advertiser: Annotated[
        str | None, typer.Option("--advertiser", help="Advertiser or page name contains.")
    ] = None,
    unseen: Annotated[
        bool | None,
        typer.Option("--unseen/--seen", help="Only ads the library stopped returning (or not)."),
    ] = None,
    special: Annotated[
        str | None,
        typer.Option(
            "--special-category", help="Only ads flagged so (e.g. health, religious_beliefs)."
        ),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """Ads, most recently seen first."""
    from jobs.ads import ads_list as list_ads

    rows, total = list_ads(
        state.settings,
        platform=platform,
        advertiser=advertiser,
        unseen=unseen,
        special_category=special,
        limit=limit,
    )
    if as_json:
        print_json({"total": total, "ads": [r.to_dict() for r in rows]})
        return
    table = Table(title=f"{len(rows)} of {total} ad(s)", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("platform", "ad", "advertiser", "versions", "last seen", "unseen since"):
        table.add_column(column, overflow="fold", min_width=len(column))
    table.add_column("special categories", overflow="fold")
    for r in rows:
        table.add_row(
            r.platform,
            safe(r.ad_id),
            safe(r.advertiser or "-"),
            str(r.versions),
            r.last_seen_at[:19],
            (r.unseen_since or "-")[:19],
            ", ".join(r.special_categories) or "-",
        )
    out.print(table)


@ads_app.command("show")
def ads_show(ad: AdArg, as_json: JsonOption = False) -> None:
    """One ad: its normalised fields, the snapshots and WARC records each version came from,
    and the snapshot of its rendered creative."""
    from jobs.ads import ads_show as show

    detail = show(state.settings, ad)
    for warning in detail.warnings:
        warn(warning)
    if as_json:
        print_json(detail.to_dict())
        return
    s = detail.summary
    out.print(f"[bold]{s.platform}:{safe(s.ad_id)}[/] {safe(s.advertiser or '')}")
    out.print(
        f"seen {s.first_seen_at[:19]} to {s.last_seen_at[:19]}, {s.versions} version(s)"
        + (f", [yellow]unseen since {s.unseen_since[:19]}[/]" if s.unseen_since else "")
    )
    for key, value in detail.fields.items():
        if value in (None, [], {}, ""):
            continue
        out.print(f"  {key}: {safe(value)}", soft_wrap=True)
    for source in detail.sources:
        out.print(
            f"  version {source['version']}: snapshot {source['snapshot']}, WARC record "
            f"{safe(source['warc_record'] or '-')}, seen {source['seen_at'][:19]}"
        )
    if detail.creative_snapshot:
        out.print(f"  creative rendered in snapshot {detail.creative_snapshot}")


@ads_app.command("versions")
def ads_versions(ad: AdArg, as_json: JsonOption = False) -> None:
    """Every version of an ad and what changed from the one before."""
    from jobs.ads import ads_versions as versions

    rows = versions(state.settings, ad)
    if as_json:
        print_json(rows)
        return
    for row in rows:
        out.print(
            f"[bold]version {row['version']}[/] seen {row['seen_at'][:19]}, "
            f"snapshot {row['snapshot'][:16]}"
        )
        for key, change in row["changed"].items():
            out.print(f"  {key}: {safe(change['from'])} → {safe(change['to'])}", soft_wrap=True)


@ads_app.command("summary")
def ads_summary(as_json: JsonOption = False) -> None:
    """Per platform: the ads indexed, those with more than one version, those no longer
    returned by a query that returned them before."""
    from jobs.ads import ads_counts

    counts = ads_counts(state.settings)
    if as_json:
        print_json(counts)
        return
    table = Table(title="ads per platform", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("platform", "ads", "changed (versions > 1)", "unseen (removed)"):
        table.add_column(column, justify="right" if column != "platform" else "left")
    for platform, c in sorted(counts.items()):
        table.add_row(platform, f"{c['ads']:,}", f"{c['changed']:,}", f"{c['unseen']:,}")
    out.print(table)
