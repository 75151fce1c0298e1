"""The tenant's text printed on a terminal: control and format characters shown escaped."""

from pipelines.terminal_text import shown


def test_names_keep_every_printable_character():
    for name in ("Store A", "café 満足度 😀", "Lobby\u00a03", ""):
        assert shown(name) == name


def test_escapes_line_breaks_and_format_characters_show_as_python_writes_them():
    assert shown("NPS \x1b[2J\x1b]8;;http://e/\x07X") == "NPS \\x1b[2J\\x1b]8;;http://e/\\x07X"
    assert shown("a\rb\nerror: c\td") == "a\\rb\\nerror: c\\td"
    assert shown("abc\u202edef\u2028") == "abc\\u202edef\\u2028"
    assert shown(42) == "42"
