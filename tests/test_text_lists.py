"""Lists cut to a screen: the first ten, how many more, and where all of them are."""

from pipelines.text_lists import first_of


def test_a_short_list_is_shown_whole():
    assert first_of([str(i) for i in range(10)], "status --json") == "; ".join(map(str, range(10)))


def test_a_long_list_says_how_many_more_and_where_they_are():
    assert first_of([str(i) for i in range(12)], "status --json") == (
        "0; 1; 2; 3; 4; 5; 6; 7; 8; 9; ... and 2 more (status --json)")
    # Device ids in a warning have no fuller list elsewhere: only the count.
    assert first_of([str(i) for i in range(11)], None).endswith("9; ... and 1 more")
