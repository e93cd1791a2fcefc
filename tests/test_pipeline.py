"""The archive pipeline's group commit, over a real local store and SQLite / PostgreSQL index.

End-to-end captures through Scrapy are in test_capture_http.py and test_capture_browser.py;
here the committer is driven directly, so that the grouping and its failure handling can be
observed: how many transactions, which capture failed, what the chain looks like after.
"""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from crawlers.pipelines import GroupCommitter
from evidence_store.archive import EvidenceStore, store_artifacts
from evidence_store.errors import EvidenceError
from evidence_store.index import Snapshot
from evidence_store.verify import verify
from tests.test_archive import capture


async def _commit_all(committer: GroupCommitter, captures: list, *, first_alone: bool) -> list:
    """Hand ``captures`` to the committer as the pipeline does; their results or exceptions.

    With ``first_alone``, the rest arrive once the first one's commit has started.
    """
    stored = [(c, store_artifacts(committer.evidence.objects, c)) for c in captures]
    tasks = []
    for n, (c, entries) in enumerate(stored):
        tasks.append(asyncio.ensure_future(committer.commit(c, entries)))
        if n == 0 and first_alone:
            while committer._committing is None or committer._waiting:
                await asyncio.sleep(0)
    return await asyncio.gather(*tasks, return_exceptions=True)


def run(evidence: EvidenceStore, captures: list, *, first_alone: bool = False, **kw: int):
    committer = GroupCommitter(evidence, **kw)
    results = asyncio.run(_commit_all(committer, captures, first_alone=first_alone))
    return committer, results


def _chain(evidence: EvidenceStore) -> list[tuple[int, str | None]]:
    with evidence.index.session() as session:
        rows = session.scalars(select(Snapshot).order_by(Snapshot.sequence))
        return [(row.sequence, row.source_url) for row in rows]


def test_captures_arriving_together_commit_in_groups_in_arrival_order(
    evidence: EvidenceStore,
) -> None:
    committer, results = run(evidence, [capture(n) for n in range(12)], first_alone=True)
    assert all(not isinstance(r, BaseException) for r in results), results
    # The first commits alone; the eleven that arrived meanwhile wait and go in together.
    assert (committer.groups, committer.committed) == (2, 12)
    assert _chain(evidence) == [(n + 1, f"https://example.org/post/{n}") for n in range(12)]
    assert [r.manifest.sequence for r in results] == list(range(1, 13))
    report = verify(evidence.objects, evidence.index)
    assert report.ok, report.problems


def test_groups_are_capped(evidence: EvidenceStore) -> None:
    committer, results = run(evidence, [capture(n) for n in range(9)], max_group=3)
    assert all(not isinstance(r, BaseException) for r in results)
    assert (committer.groups, committer.committed) == (3, 9)
    assert [seq for seq, _ in _chain(evidence)] == list(range(1, 10))


def test_a_capture_that_cannot_commit_fails_alone(evidence: EvidenceStore) -> None:
    captures = [capture(n) for n in range(6)]
    captures[3] = capture(3, run_id="no-such-run")  # refused at commit: the run is unknown
    committer, results = run(evidence, captures)
    failed = [n for n, r in enumerate(results) if isinstance(r, BaseException)]
    assert failed == [3]
    assert (committer.groups, committer.committed) == (5, 5)  # the group, retried one by one
    assert isinstance(results[3], EvidenceError) and "unknown run" in str(results[3])
    # The others are archived, in order, in one unbroken chain without the failed capture.
    assert _chain(evidence) == [
        (seq, f"https://example.org/post/{n}") for seq, n in enumerate([0, 1, 2, 4, 5], 1)
    ]
    report = verify(evidence.objects, evidence.index)
    assert report.ok, report.problems


@pytest.mark.parametrize("max_group", [1, 64])
def test_every_group_size_keeps_one_chain_per_collection(
    evidence: EvidenceStore, max_group: int
) -> None:
    captures = [capture(n, collection=f"c{n % 2}") for n in range(8)]
    _, results = run(evidence, captures, max_group=max_group)
    assert all(not isinstance(r, BaseException) for r in results)
    by_collection: dict[str, list[int]] = {}
    for r in results:
        by_collection.setdefault(r.manifest.collection, []).append(r.manifest.sequence)
    assert by_collection == {"c0": [1, 2, 3, 4], "c1": [1, 2, 3, 4]}
    assert verify(evidence.objects, evidence.index).ok
