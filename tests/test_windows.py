"""Window planning without HTTP: ranges, adaptive sizes, overlap, resume from state."""

from datetime import UTC, datetime, timedelta

from pipelines.micrometrics.windows import OVERLAP, StreamWindows, WindowSettings

NOW = datetime(2026, 11, 28, tzinfo=UTC)
SETTINGS = WindowSettings(
    start_at=datetime(2000, 1, 1, tzinfo=UTC),
    lookback=timedelta(hours=2),
    initial_window=timedelta(days=30),
    target_pages=10,
    page_size=100,
)


def walk(state, counts, floor=None, run_end=NOW):
    """Drive the planner, answering each window with the next count; return the windows."""
    planner = StreamWindows(state, SETTINGS, run_end, floor=floor)
    windows = []
    for count in counts:
        window = planner.next_window()
        if window is None:
            break
        windows.append(window)
        planner.complete(window, count)
    assert planner.next_window() is None, "planner wanted more windows than answered"
    return windows


def test_empty_stream_costs_two_windows_and_history_one():
    state = {}
    windows = walk(state, [0, 0])
    assert windows[0].end == NOW + OVERLAP and windows[0].start < NOW - timedelta(days=30)
    assert windows[1].start == SETTINGS.start_at - OVERLAP  # all the rest at once
    assert state["high_water"] == "2026-11-28T00:00:00.000+00:00"


def test_dense_history_shrinks_windows_to_the_target():
    state = {}
    planner = StreamWindows(state, SETTINGS, NOW)
    first = planner.next_window()
    planner.complete(first, 30_000)  # 30 days held 30 000 records: 1000/day
    second = planner.next_window()
    assert abs((second.end - second.start) - timedelta(days=1)) <= 3 * OVERLAP
    assert second.end > first.start  # overlapping neighbours


def test_sparse_history_jumps_to_start():
    windows = walk({}, [5, 40])
    assert windows[1].start == SETTINGS.start_at - OVERLAP


def test_floor_extends_window_to_start():
    floor = NOW - timedelta(days=10)  # survey created 10 days ago
    windows = walk({}, [100], floor=floor)
    assert len(windows) == 1 and windows[0].start == SETTINGS.start_at - OVERLAP


def test_incremental_range_starts_at_high_water_minus_lookback():
    state = {"high_water": "2026-11-27T00:00:00.000+00:00", "density": 0.01}
    windows = walk(state, [12])
    # OVERLAP past both bounds: a record stamped at the lookback's very start is read whatever
    # the server's start_at semantics (exclusive: a late batch stamped there was skipped).
    assert windows[0].start == datetime(2026, 11, 26, 22, tzinfo=UTC) - OVERLAP
    assert windows[0].end == NOW + OVERLAP


def test_up_to_date_stream_asks_nothing():
    assert walk({"high_water": "2026-11-28T00:00:00.000+00:00"}, []) == []


def test_resume_continues_below_the_last_checkpoint():
    state = {}
    planner = StreamWindows(state, SETTINGS, NOW)
    first = planner.next_window()
    planner.complete(first, 30_000)
    saved = {key: (dict(value) if isinstance(value, dict) else value)
             for key, value in state.items()}
    # A new process (later run_end) resumes the same range before opening a new one.
    later = NOW + timedelta(hours=5)
    resumed = StreamWindows(saved, SETTINGS, later).next_window()
    assert resumed.end == first.start + 2 * OVERLAP and resumed.end <= NOW


def test_windows_tile_the_range_with_overlap():
    planner = StreamWindows({}, SETTINGS, NOW)
    counts = iter([30_000, 1000, 900, 800, 10])
    windows = []
    while (window := planner.next_window()) is not None:
        assert len(windows) < 20
        windows.append(window)
        planner.complete(window, next(counts, 0))
    assert len(windows) >= 5
    for newer, older in zip(windows, windows[1:], strict=False):
        assert older.end > newer.start  # no gap: every instant is in some window
    assert windows[-1].start == SETTINGS.start_at - OVERLAP


def test_a_window_read_part_way_resumes_from_its_cursor_with_the_same_bounds():
    state = {}
    planner = StreamWindows(state, SETTINGS, NOW)
    window = planner.next_window()
    planner.checkpoint(window, "cursor-7", 700)
    # A later process (another run_end) continues the same window from the same cursor.
    resumed = StreamWindows(state, SETTINGS, NOW + timedelta(hours=3))
    assert resumed.next_window() == window
    assert resumed.resume_cursor() == ("cursor-7", 700)
    resumed.restart()  # the API refused the cursor: same window, from its first page
    assert resumed.next_window() == window and resumed.resume_cursor() == (None, 0)
    resumed.complete(window, 900)
    assert "window" not in state["pending"] and resumed.resume_cursor() == (None, 0)


def test_a_sliced_window_resumes_its_slices_in_another_process_and_covers_the_window():
    state = {}
    planner = StreamWindows(state, SETTINGS, NOW)
    window = planner.next_window()
    cut = window.start + (window.end - window.start) / 2
    planner.slice(window, cut)
    older, newer = planner.slices()
    # Together the slices cover the window, overlapping around the cut.
    assert (older.window.start, newer.window.end) == (window.start, window.end)
    assert older.window.end - newer.window.start == 2 * OVERLAP
    # Each counts its own side of the cut; a record without a time counts in the newer one.
    page = [{"updated_at": cut - timedelta(seconds=1)}, {"updated_at": cut}, {"id": 1}]
    assert (older.counted(page), newer.counted(page)) == (1, 2)
    older.finish(40)
    newer.checkpoint("cursor-3", 60)
    assert "in two slices" in planner.describe()

    # A later process (another run_end) gets the same window and slices, where they were.
    resumed = StreamWindows(state, SETTINGS, NOW + timedelta(hours=3))
    assert resumed.next_window() == window and not resumed.may_slice
    older, newer = resumed.slices()
    assert (older.done, older.records) == (True, 40)
    assert (newer.done, newer.resume_cursor()) == (False, ("cursor-3", 60))
    newer.finish(100)
    resumed.complete(window, older.records + newer.records)
    assert resumed.slices() == [] and state["density"] > 0


def deep_settings(every_hours: float) -> WindowSettings:
    from dataclasses import replace

    return replace(SETTINGS, deep_lookback=timedelta(hours=72),
                   deep_every=timedelta(hours=every_hours))


def test_deep_pass_widens_a_new_range_once_per_period():
    state = {"high_water": "2026-11-27T23:00:00.000+00:00",
             "deep_at": "2026-11-27T00:00:00.000+00:00"}
    planner = StreamWindows(state, deep_settings(24), NOW)  # exactly 24 h later: due
    window = planner.next_window()
    assert window.start <= datetime(2026, 11, 24, 23, tzinfo=UTC)
    assert planner.deep_below == datetime(2026, 11, 27, 21, tzinfo=UTC) - OVERLAP  # the plain one
    assert state["deep_at"] == "2026-11-28T00:00:00.000+00:00"
    planner.complete(window, 10)
    later = StreamWindows(state, deep_settings(24), NOW + timedelta(hours=1))
    assert not later.deep_pass_due()
    assert later.next_window().start == datetime(2026, 11, 27, 22, tzinfo=UTC) - OVERLAP  # hw - 2 h
    assert later.deep_below is None


def test_first_sync_counts_as_a_deep_pass_and_zero_means_every_sync():
    state = {}
    walk_planner = StreamWindows(state, deep_settings(24), NOW)
    walk_planner.next_window()
    assert state["deep_at"] == "2026-11-28T00:00:00.000+00:00"
    assert walk_planner.deep_below is None
    again = {"high_water": "2026-11-28T00:00:00.000+00:00", "deep_at": state["deep_at"]}
    assert StreamWindows(again, deep_settings(0), NOW + timedelta(minutes=5)).deep_pass_due()
