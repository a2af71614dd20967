"""Group commit: what the core asks to persist reaches the database in few transactions.

``Persist`` commands are merged into the next batch as they come: a record replaces an
earlier record of the same row (the newest state wins), journal entries are appended. A
batch is written as soon as it holds a proposal (a change someone waits for) and no
other batch is being written; whatever arrives meanwhile shares the next one, so a burst
of fifty StartTransactions costs a couple of commits, not fifty. Written-behind records
alone wait for :meth:`CommitWriter.flush` (at least once a second).

The batch is written on the repository's own thread (or on the executor the owner gives:
a simulated day writes inline, see simulators/README.md). The outcome goes back to the core
as ``CommitDone`` or ``CommitFailed`` with the proposals the batch carried. After a
failure the written-behind records of the batch are merged back under anything newer, so
they are retried; the proposals' records are dropped with the proposals.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import AbstractContextManager
from typing import TypeVar

from controller.core.commands import Persist
from controller.core.records import Record, record_key
from controller.repository import Repository, StoreError

log = logging.getLogger(__name__)

T = TypeVar("T")

# Called with the proposals of a written batch, and the error when it failed.
Outcome = Callable[[tuple[int, ...], Exception | None], None]
# Called right before a batch is cut, to add what the core has to write behind.
BeforeBatch = Callable[[], None]
# Wrapped around each write to the database (to time it: evc_commit_seconds).
CommitTimer = Callable[[], AbstractContextManager[object]]


class Batch:
    __slots__ = ("appended", "behind", "proposals", "rows")

    def __init__(self) -> None:
        self.rows: dict[tuple[str, ...], Record] = {}
        # Records without a row of their own (journal entries), and whether each was
        # written behind (True) or came with a proposal.
        self.appended: list[tuple[Record, bool]] = []
        self.proposals: list[int] = []
        # Rows whose newest record was written behind, not by a proposal.
        self.behind: set[tuple[str, ...]] = set()

    def add(self, command: Persist) -> None:
        behind = command.proposal is None
        for record in command.records:
            key = record_key(record)
            if key is None:
                self.appended.append((record, behind))
                continue
            self.rows[key] = record
            if behind:
                self.behind.add(key)
            else:
                self.behind.discard(key)
        if not behind:
            assert command.proposal is not None
            self.proposals.append(command.proposal)

    def records(self) -> list[Record]:
        return [*self.rows.values(), *(record for record, _ in self.appended)]

    def requeue_behind(self, into: Batch) -> None:
        """This batch failed: put its written-behind part into ``into``, under anything
        newer there. What came with proposals goes with them."""
        for key in self.behind:
            if key not in into.rows:
                into.rows[key] = self.rows[key]
                into.behind.add(key)
        into.appended[:0] = [(record, True) for record, behind in self.appended if behind]

    def __bool__(self) -> bool:
        return bool(self.rows or self.appended or self.proposals)


class CommitWriter:
    def __init__(
        self,
        repository: Repository,
        *,
        on_outcome: Outcome,
        before_batch: BeforeBatch,
        commit_timer: CommitTimer = contextlib.nullcontext,
        executor: Executor | None = None,
    ) -> None:
        self.repository = repository
        self._commit_timer = commit_timer
        self._on_outcome = on_outcome
        self._before_batch = before_batch
        # One thread: the repository's connection is used from one thread only.
        self._executor = executor or ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="repository"
        )
        self._batch = Batch()
        self._writing: asyncio.Task[None] | None = None
        self._scheduled = False

    def add(self, command: Persist) -> None:
        self._batch.add(command)
        if command.proposal is not None:
            self._schedule()

    def _schedule(self) -> None:
        # At the end of this turn of the loop, so that everything that arrived with it
        # shares the batch.
        if not self._scheduled and self._writing is None:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._start)

    def _start(self) -> None:
        self._scheduled = False
        if self._writing is None:
            self._writing = asyncio.get_running_loop().create_task(self._write_batch())

    async def flush(self) -> None:
        """Write everything handed over so far (and what the core has to write behind)."""
        while self._writing is not None:
            await asyncio.shield(self._writing)
        self._writing = asyncio.get_running_loop().create_task(self._write_batch())
        await asyncio.shield(self._writing)

    @property
    def idle(self) -> bool:
        """No batch being written, none about to be."""
        return not self._scheduled and self._writing is None

    async def wait_idle(self) -> None:
        """Until :attr:`idle`: every batch handed over with a proposal written and its
        outcome handed back (which may have started another batch: that one too)."""
        while not self.idle:
            if self._writing is None:
                await asyncio.sleep(0)  # the batch starts at the end of this turn of the loop
            else:
                await asyncio.shield(self._writing)

    async def _write_batch(self) -> None:
        try:
            self._before_batch()
            batch, self._batch = self._batch, Batch()
            if batch:
                await self._write(batch)
        finally:
            self._writing = None
        if self._batch.proposals:
            self._schedule()

    async def _write(self, batch: Batch) -> None:
        loop = asyncio.get_running_loop()
        proposals = tuple(batch.proposals)
        try:
            await loop.run_in_executor(self._executor, self._timed_write, batch.records())
        except StoreError as error:
            log.error("%s", error)
            batch.requeue_behind(self._batch)
            self._on_outcome(proposals, error)
        else:
            self._on_outcome(proposals, None)

    def _timed_write(self, records: list[Record]) -> None:
        # On the repository's thread: the time of the write itself, not of the wait for it.
        with self._commit_timer():
            self.repository.write(records)

    async def close(self) -> None:
        try:
            await self.flush()
        finally:
            self._executor.shutdown(wait=True)
            self.repository.close()

    async def read(self, query: Callable[[], T]) -> T:
        """Run a read on the repository's thread (a long history never stalls the loop)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, query)
