"""The API's text, as the commands print it on a terminal.

Survey and device names and ids are the tenant's: one holding an escape sequence (``ESC [2J``
clears the screen, ``ESC ]8;`` makes a link), a carriage return (a line written over) or a
line break (a forged ``error:`` line) did that on the operator's terminal and in the log
shippers reading it, from the preview of ``models`` and ``sync``, and from warnings. Control
and format characters (Unicode Cc, Cf: also the right-to-left override) and line separators
are shown escaped, as ``repr`` shows them; everything else as it is.
"""

from __future__ import annotations

import unicodedata
from typing import Any

HIDDEN = frozenset(("Cc", "Cf", "Zl", "Zp"))


def shown(value: Any) -> str:
    """``value`` as text safe to print: its control and format characters escaped."""
    text = str(value)
    if text.isprintable():  # the common case, decided in C (no Cc, Cf, Zl, Zp; no non-space Z)
        return text
    return "".join(repr(char)[1:-1] if unicodedata.category(char) in HIDDEN else char
                   for char in text)
