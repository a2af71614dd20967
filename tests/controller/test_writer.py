"""The commit writer: waiting until it is idle, and writing on the executor its owner gives
(a simulated day writes inline so that a commit comes back at the same point every run)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from contextlib import contextmanager
from pathlib import Path
from typing import ParamSpec, TypeVar

from controller.core.commands import Persist
from controller.core.state import JournalEntry
from controller.repository import Repository
from controller.writer import CommitWriter

P = ParamSpec("P")
T = TypeVar("T")


class Inline(Executor):
    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        future: Future[T] = Future()
        future.set_result(fn(*args, **kwargs))
        return future


class Recorder:
    """What the writer reports: outcomes, and the thread each write ran on."""

    def __init__(self) -> None:
        self.outcomes: list[tuple[int, ...]] = []
        self.threads: list[int] = []

    def outcome(self, proposals: tuple[int, ...], error: Exception | None) -> None:
        assert error is None
        self.outcomes.append(proposals)

    @contextmanager
    def timer(self) -> Iterator[None]:
        self.threads.append(threading.get_ident())
        yield


def entry(kind: str) -> Persist:
    return Persist((JournalEntry(1.0, kind, data={}),), proposal=None)


def proposal(number: int, kind: str) -> Persist:
    return Persist((JournalEntry(1.0, kind, data={}),), proposal=number)


def writer_for(tmp_path: Path, recorder: Recorder, executor: Executor | None) -> CommitWriter:
    return CommitWriter(
        Repository(tmp_path / "writer.db"),
        on_outcome=recorder.outcome,
        before_batch=lambda: None,
        commit_timer=recorder.timer,
        executor=executor,
    )


async def test_wait_idle_returns_once_every_proposal_is_written_and_reported(
    tmp_path: Path,
) -> None:
    recorder = Recorder()
    writer = writer_for(tmp_path, recorder, None)
    try:
        assert writer.idle
        writer.add(entry("behind"))
        assert writer.idle  # written behind: waits for a flush or a proposal
        writer.add(proposal(1, "first"))
        writer.add(proposal(2, "second"))
        assert not writer.idle
        await writer.wait_idle()
        assert writer.idle
        assert recorder.outcomes == [(1, 2)]  # one batch, its outcome handed back
        assert recorder.threads and threading.get_ident() not in recorder.threads
        kinds = [line.entry.kind for line in writer.repository.journal(0, 10)]
        assert kinds == ["behind", "first", "second"]
    finally:
        await writer.close()


async def test_an_inline_executor_writes_on_the_event_loop_thread(tmp_path: Path) -> None:
    recorder = Recorder()
    writer = writer_for(tmp_path, recorder, Inline())
    try:
        writer.add(proposal(1, "first"))
        await writer.wait_idle()
        assert recorder.outcomes == [(1,)]
        assert recorder.threads == [threading.get_ident()]
    finally:
        await writer.close()
