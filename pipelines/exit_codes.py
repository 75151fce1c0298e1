"""The exit statuses every command shares (the sync's, the models', the report's), and the
words ``--json`` gives them. ``status`` has its own (fresh, stale, unavailable)."""

from __future__ import annotations

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_LOCKED = 0, 1, 2, 3
EXIT_DATA_TEST = 4  # loaded (or built), but a data test failed: a retry would load the same data

EXIT_CAUSES = {EXIT_OK: "ok", EXIT_FAILED: "failed", EXIT_CONFIG: "config",
               EXIT_LOCKED: "locked", EXIT_DATA_TEST: "data_test"}
LOADED = (EXIT_OK, EXIT_DATA_TEST)  # a sync whose load succeeded
