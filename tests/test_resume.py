"""A sync cut between extract (where dlt commits state) and load: nothing duplicated or lost."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime

from pipelines.micrometrics.rounds import RoundBudget, SyncBounds
from pipelines.micrometrics.settings import load_settings
from pipelines.micrometrics.source import micrometrics_source
from tests.conftest import KEY, SECRET
from tests.syncing import pipeline_for, sync_sandbox
from tests.truth import assert_matches_truth


def extract_one_round_and_die(sandbox, tmp_path, clock, client):
    """Extract one round (dlt writes the windows it finished to local state) and stop there,
    as if the process died before normalize and load."""
    settings = load_settings(base_url=sandbox.url, api_key=KEY, api_secret=SECRET,
                             window_pages=2)
    now = datetime.fromtimestamp(clock(), UTC)
    budget = RoundBudget(pages=2)
    pipeline = pipeline_for(tmp_path)
    pipeline.extract(micrometrics_source(settings=settings, client=client,
                                         bounds=SyncBounds(now, now), budget=budget))
    assert budget.more, "the round should have stopped part-way"
    return pipeline


def test_state_committed_but_not_loaded_is_loaded_by_the_next_sync(
    start_sandbox, tmp_path, clock, virtual_client
):
    sandbox = start_sandbox(clock=clock, responses=600, page_size=20, rate=50.0, burst=50)
    extract_one_round_and_die(sandbox, tmp_path, clock, virtual_client(sandbox, 50.0, 50))
    # The next sync (a new process: a new pipeline object over the same directories) first
    # loads the package the dead one extracted, then resumes after its checkpoint.
    sync_sandbox(sandbox, tmp_path, clock, rate=50.0, burst=50, window_pages=10)
    assert_matches_truth(tmp_path, sandbox.truth())


def test_local_state_lost_after_extract_falls_back_to_the_destination(
    start_sandbox, tmp_path, clock, virtual_client
):
    sandbox = start_sandbox(clock=clock, responses=600, page_size=20, rate=50.0, burst=50)
    sync_sandbox(sandbox, tmp_path, clock, rate=50.0, burst=50)
    clock.advance(300)
    sandbox.add_responses(30)
    sandbox.update_responses(20)
    # State advanced locally for data that never reached the destination; then the working
    # directory is lost (a new container): the destination's state is the truth again.
    extract_one_round_and_die(sandbox, tmp_path, clock, virtual_client(sandbox, 50.0, 50))
    shutil.rmtree(tmp_path / "pipelines")
    sync_sandbox(sandbox, tmp_path, clock, rate=50.0, burst=50)
    assert_matches_truth(tmp_path, sandbox.truth())
