"""Regenerate README.md's Troubleshooting section from the message catalog.

``python -m pipelines.sync.troubleshooting`` rewrites the part between the markers; a test fails
when the README and ``pipelines.micrometrics.messages`` disagree.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipelines.micrometrics.messages import troubleshooting_markdown

START, END = "<!-- troubleshooting:start -->", "<!-- troubleshooting:end -->"
README = Path(__file__).resolve().parents[2] / "README.md"


def render_section(readme: str) -> str:
    """``readme`` with the generated section in place."""
    head, found, rest = readme.partition(START)
    if not found:
        raise ValueError(f"README has no {START} marker")
    _, found, tail = rest.partition(END)
    if not found:
        raise ValueError(f"README has no {END} marker")
    return f"{head}{START}\n{troubleshooting_markdown()}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.sync.troubleshooting",
        description=f"Rewrite the Troubleshooting section of {README} from the message "
                    "catalog (pipelines/micrometrics/messages.py).")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 when the section is out of date")
    args = parser.parse_args(argv)
    text = README.read_text(encoding="utf-8")
    rendered = render_section(text)
    if args.check:
        current = rendered == text
        print(f"{README}: Troubleshooting section " + ("up to date" if current else
              "out of date: run python -m pipelines.sync.troubleshooting"))
        return 0 if current else 1
    README.write_text(rendered, encoding="utf-8")
    print(f"wrote the Troubleshooting section of {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
