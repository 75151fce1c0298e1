"""One sync = one or more rounds; each round is one dlt extract+load, so state is checkpointed.

dlt writes source state only after a whole extract, so a sync that walked a long backfill in a
single ``pipeline.run`` would lose all of it to a crash. Instead the sync runs rounds of about
``round_pages`` pages: every stream fetches windows until the round's page budget is spent (a
window in flight is always finished), the round is loaded, and the next round resumes from the
state that round committed. A crash loses at most the round in flight.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass
class SyncRun:
    """What one sync invocation shares across its rounds.

    Attributes:
        run_end: Upper bound of every window in this sync (fixed, so rounds continue ranges).
        round_pages: Page budget of one round (a window in flight is always finished).
        start_at: With ``end_at``, an explicit range to re-read without touching the
            incremental state (``--start-at``/``--end-at``).
        explicit_range: True when ``start_at`` is an explicit re-read.
        now: Wall-clock time at the start of the sync (the survey list reaches it).
        surveys: The survey list, fetched once per sync; ``response_index`` the surveys whose
            responses are read (quarantined ones with an id included).
        scratch: Window state of an explicit range, which must not touch dlt state.
        rejected: Records quarantined so far.
    """

    run_end: datetime
    round_pages: int
    start_at: datetime | None = None
    explicit_range: bool = False
    now: datetime | None = None
    round: int = 0
    pages_this_round: int = 0
    more: bool = False
    surveys: list[dict[str, Any]] | None = None
    surveys_emitted: bool = False
    questions_emitted: bool = False  # the question history, like surveys: first round
    rejected_surveys: list[dict[str, Any]] = field(default_factory=list)
    response_index: list[dict[str, Any]] = field(default_factory=list)
    scratch: dict[str, dict[str, Any]] = field(default_factory=dict)
    rejected: int = 0
    # Deep pass: ``{id: updated_at}`` now in the destination for a table and ids (None: not
    # counted), the streams that ran one, and the records found only by it.
    known_versions: Callable[[str, list], dict] | None = None
    deep_streams: set[str] = field(default_factory=set)
    deep_found: int = 0

    def new_round(self) -> None:
        self.round += 1
        self.pages_this_round = 0
        self.more = False

    def may_start_window(self) -> bool:
        """Whether a stream that owes a window may fetch it in this round; if not, the sync
        needs another round."""
        if self.pages_this_round < self.round_pages:
            return True
        self.more = True
        return False

    def may_continue_window(self) -> bool:
        """Whether a window being read may fetch its next page in this round; if not, its
        cursor is checkpointed and the sync needs another round."""
        return self.may_start_window()

    def spend(self, pages: int) -> None:
        self.pages_this_round += pages

    def stream_state(self, resource_state: dict[str, Any], key: str) -> dict[str, Any]:
        """Where a stream keeps its windows: dlt state, or scratch for an explicit range."""
        if self.explicit_range:
            return self.scratch.setdefault(key, {})
        return resource_state.setdefault(key, {})
