"""Opens a report in Debian's headless chromium, driven by Playwright, with the network cut off.

Used by the report's browser test and by :mod:`.screenshot`. Playwright (a dev dependency) only
drives the browser: it never downloads one of its own (``make chromium`` installs Debian's).
Every request that is not ``file://`` is aborted and recorded, so a page that reaches for the
network fails its check instead of quietly loading something.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM = Path(os.environ.get("REPORT_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
# Plotly marks each graph div with js-plotly-plot once drawn, its SVG inside.
RENDERED_CHARTS_JS = """() => Array.from(document.querySelectorAll('div.js-plotly-plot'))
    .filter(div => div.querySelector('svg.main-svg')).length"""


class BrowserMissing(RuntimeError):
    """Chromium or Playwright is not installed."""


@dataclass
class PageLog:
    """What a page did: every request, the ones blocked, console messages, page errors and
    dialogs."""

    requests: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    console: list[tuple[str, str]] = field(default_factory=list)  # (type, text)
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)  # alert() and the like, dismissed

    def route(self, route: Any) -> None:
        url = route.request.url
        if url.startswith("file://"):
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort("blockedbyclient")

    def clear(self) -> None:
        for entries in (self.requests, self.blocked, self.console, self.errors, self.dialogs):
            entries.clear()

    @property
    def console_errors(self) -> list[str]:
        return [text for kind, text in self.console if kind in ("error", "assert")]


@contextmanager
def offline_page(width: int = 1280, height: int = 900,
                 scale: float = 1.0) -> Iterator[tuple[Any, PageLog]]:
    """A fresh headless chromium page that may load ``file://`` URLs only, and its log.

    Raises:
        BrowserMissing: ``/usr/bin/chromium`` (or ``$REPORT_CHROMIUM``) or Playwright is absent.
    """
    if not CHROMIUM.exists():
        raise BrowserMissing(f"{CHROMIUM} is missing: run `make chromium` (Debian's chromium "
                             f"package, apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        raise BrowserMissing("playwright is missing: pip install -e '.[dev]'") from exc
    log = PageLog()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": width, "height": height},
                                          device_scale_factor=scale,
                                          service_workers="block")
            context.route("**/*", log.route)
            page = context.new_page()
            page.on("request", lambda request: log.requests.append(request.url))
            page.on("console", lambda message: log.console.append((message.type, message.text)))
            page.on("pageerror", lambda error: log.errors.append(str(error)))
            page.on("dialog", lambda dialog: (log.dialogs.append(dialog.message),
                                              dialog.dismiss()))
            yield page, log
        finally:
            browser.close()


def open_report(page: Any, path: Path | str, charts: int, timeout_ms: float = 20_000) -> int:
    """Opens the report file and waits until ``charts`` plotly charts have drawn their SVG.

    Returns:
        The number of charts drawn.
    """
    page.goto(Path(path).resolve().as_uri(), wait_until="load", timeout=timeout_ms)
    page.wait_for_function(f"({RENDERED_CHARTS_JS})() >= {int(charts)}", timeout=timeout_ms)
    return int(page.evaluate(RENDERED_CHARTS_JS))
