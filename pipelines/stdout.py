"""The commands' stdout: summaries, previews, JSON and paths written so that the text never
fails on the terminal's encoding and a stdout that cannot be written never changes what the
command did.

A Latin-1 or ASCII stdout (a host's locale, ``PYTHONIOENCODING``) raised on a survey named
``Café ☕`` after the sync had loaded and built its models: the sync was recorded as failed and
status, models and report ended in a traceback. A stdout on a full disk (a cron log's) or a
closed pipe (``| head -1``) failed a sync that had loaded, blamed the pipelines folder's disk,
and gave tracebacks. Characters the encoding lacks are now written as escapes (stderr already
does so), and a failed write is kept for one warning on stderr (none for a pipe the reader
closed, as other tools) while the command's outcome and exit status stand.
"""

from __future__ import annotations

import sys
from typing import TextIO

from pipelines.error_chain import one_line


class Stdout:
    """Writes lines to ``stream`` (default: ``sys.stdout`` when written), flushed at once so a
    failure shows here, not at exit; after one, writes nothing more."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream
        self.error: OSError | None = None

    def __call__(self, text: str) -> None:
        if self.error is not None:
            return
        stream = self.stream or sys.stdout
        if stream is None:  # started with descriptor 1 closed (`>&-`): print() drops it too
            return
        try:
            escape_what_it_cannot_encode(stream)
            stream.write(f"{text}\n")
            stream.flush()
        except (OSError, ValueError) as exc:  # ValueError: a stream closed since
            self.error = exc if isinstance(exc, OSError) else OSError(str(exc))

    def warn_if_unwritten(self, what: str) -> None:
        """One line on stderr when a write failed (not for a reader that closed its pipe)."""
        if self.error is not None and not isinstance(self.error, BrokenPipeError):
            print(f"warning: {what} could not be written to stdout "
                  f"({one_line(self.error)}); what the command did stands", file=sys.stderr)


def escape_what_it_cannot_encode(stream: TextIO) -> None:
    if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
        stream.reconfigure(errors="backslashreplace")


def write_out(text: str, what: str) -> None:
    """``text`` on stdout at the end of a command; a stdout that cannot take it is a warning
    naming ``what``, and changes no exit status."""
    out = Stdout()
    out(text)
    out.warn_if_unwritten(what)
