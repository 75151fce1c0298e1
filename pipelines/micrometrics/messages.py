"""What to do about each failure: one catalog for error messages and the README.

Each hint is appended to the one-line error a user sees, and
``python -m pipelines.sync.troubleshooting`` writes the same catalog into README.md's
Troubleshooting section (a test keeps the two equal).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Hint:
    """A failure as the user meets it, and what to do.

    Attributes:
        symptom: How the one-line error starts or what it says.
        action: What to check or do; also appended to the error message.
    """

    symptom: str
    action: str


HINTS: dict[str, Hint] = {
    "missing_config": Hint(
        "error: missing configuration: SOURCES__MICROMETRICS__...",
        "set the named environment variables, or the same keys under [sources.micrometrics] "
        "in .dlt/secrets.toml (copy .dlt/secrets.toml.example)",
    ),
    "invalid_setting": Hint(
        "error: <setting> must be ... / base_url ... has an invalid ...",
        "fix the value of the named setting",
    ),
    "invalid_start": Hint(
        "error: start_at: not an ISO 8601 timestamp / start_at must be from 1970 ...",
        "fix the value of the named setting; timestamps need an offset, "
        "e.g. 2024-01-01T00:00:00+00:00",
    ),
    "insecure_url": Hint(
        "error: base_url ... is plain http to a non-loopback host",
        "use the https:// URL of your tenant; only the local sandbox may use http",
    ),
    "auth": Hint(
        "... failed: HTTP 401: check the API key and secret ...",
        "check the API key and secret, and that this machine's clock is right",
    ),
    "clock": Hint(
        "... failed: HTTP 401: this machine's clock differs from the server's by N minutes",
        "fix the system clock (enable NTP); the API refuses requests more than 15 minutes off",
    ),
    "unsendable": Hint(
        "... failed: no response: not sent (ValueError): a header or the URL holds a character "
        "HTTP does not allow",
        "check base_url and the API key for spaces, line breaks or other control characters",
    ),
    "unreachable": Hint(
        "... failed: no response: could not connect ...",
        "check base_url (host and port) and that this machine can reach it",
    ),
    "proxy": Hint(
        "... failed: no response: not sent (InvalidURL): the proxy's URL (not shown) could not "
        "be read / could not connect to ... through the proxy (ProxyError)",
        "check HTTPS_PROXY, HTTP_PROXY and ALL_PROXY (lower case too): a scheme, host and port "
        "(http://proxy.internal:3128), a user and password percent-encoded ('@' as %40, '/' as "
        "%2F, '#' as %23), and that this machine can reach the proxy; NO_PROXY lists the hosts "
        "reached without it",
    ),
    "not_found": Hint(
        "... failed: HTTP 404 ...",
        "check base_url: it is the tenant's root URL, without /api/experience; if other "
        "endpoints answer, this tenant may not have this one: ask Micrometrics (--resources "
        "can leave its resource out meanwhile, but the models wait for every table)",
    ),
    "not_json": Hint(
        "... failed: HTTP 200: the body is not JSON ...",
        "a proxy or login page answered instead of the API: check base_url and any HTTP proxy",
    ),
    "cursor": Hint(
        "... failed: HTTP 400/404/410/422: ... (a request with &cursor=)",
        "the API kept refusing its own paging cursor; run the sync again (completed windows are "
        "kept), and report it to Micrometrics if it persists",
    ),
    "paging_loop": Hint(
        "error: sync failed: GET ... failed: HTTP 200: the API sent the paging cursor of a page "
        "this chain already read ...",
        "the API pages in a loop: report it to Micrometrics with the URL named; each sync "
        "stops there (what it loaded before stays)",
    ),
    "server": Hint(
        "... failed: HTTP 5xx ... / no response: ConnectionError from HOST after N attempts / "
        "HTTP 200: the body was empty or its JSON cut short",
        "the API kept failing; run the sync again later: completed windows are kept",
    ),
    "throttled": Hint(
        "... failed: HTTP 429 ...",
        "another client is using the same API key's rate limit; run syncs one at a time",
    ),
    "locked": Hint(
        "error: another sync of pipeline 'micrometrics' is running ...",
        "wait for it to finish; the lock is released when that process ends, even if killed; "
        "one that has held it far longer than a sync takes may hang (a stopped process, a "
        "network mount that stopped answering): end it (kill <pid> on its machine, kill -9 if "
        "it stays) and the next sync goes on from the last window it committed",
    ),
    "unencoded_password": Hint(
        "error: DESTINATION__..._CREDENTIALS: the user or password in the connection string "
        "holds a character that must be percent-encoded there",
        "write '@' as %40, '/' as %2F, '#' as %23, '%' as %25 in the user and password, or set "
        "the password on its own (DESTINATION__POSTGRES__CREDENTIALS__PASSWORD, or the same "
        "key in .dlt/secrets.toml)",
    ),
    "lock_timeout": Hint(
        "error: (sync failed: / model ... failed: / report query ... failed: / destination "
        "postgres not readable:) PostgreSQL gave up waiting for a lock (canceling statement due "
        "to lock timeout ...)",
        "nothing is lost (a sync's load stays pending: the next sync loads it first); run the "
        "command again once the other session lets go; look for a session idle "
        "in a transaction (SELECT pid, application_name, state, xact_start FROM "
        "pg_stat_activity WHERE state LIKE 'idle in transaction%') and end it (commit, or "
        "pg_terminate_backend); a longer wait: add -c lock_timeout=5min to the connection's "
        "options (default 60s)",
    ),
    "rejected_records": Hint(
        "warning: N records were quarantined in _rejected_records",
        "records that cannot be loaded (no id or one of the wrong type, no parseable "
        "updated_at, answers that are no list, NaN or a lone surrogate, two keys for one "
        "column or a key named like dlt's _dlt_ columns, a time before year 1 or after 9999 "
        "once in UTC) are kept as JSON with "
        "the reason in the _rejected_records table instead of being loaded; report them to "
        "Micrometrics",
    ),
    "stuck_package": Hint(
        "error: sync failed: dlt's normalize failed (package <load id>): ... / the "
        "load of <table> failed: ...",
        "the package stays pending and every sync loads it first: fix the cause, or sync once "
        "with --drop-pending to drop it and read its windows again from the API",
    ),
    "disk": Hint(
        "error: sync failed: this machine's disk: [Errno 28] No space left on device ... / "
        "[Errno 30] Read-only file system ... / [Errno 27] File too large ...",
        "free space on (or make writable) the disk of the path named, usually the pipelines "
        "folder (under DLT_DATA_DIR) or the DuckDB file's, or raise the file-size limit "
        "(ulimit -f); nothing is lost: the next sync loads or reads again what this one "
        "could not",
    ),
    "schema_update": Hint(
        "error: sync failed: the destination refused to create the dataset / update the "
        "tables ...",
        "on PostgreSQL the connector's role needs CREATE on the database (or the dataset's "
        "schemas, micrometrics and micrometrics_staging, made for it by a DBA) and must own "
        "the tables it loads (a new field adds a column); DuckDB, to write the file and its "
        "folder (the .wal beside it); nothing is lost: the next sync loads what this one "
        "could not",
    ),
    "stdout": Hint(
        "warning: the summary could not be written to stdout ([Errno 28] No space left on "
        "device); what the command did stands",
        "the command's exit status and status's record are what it did; free the disk stdout "
        "goes to (a cron line's log) or run with --quiet; a pipe its reader closed (| head) "
        "is not warned of",
    ),
    "duckdb_name": Hint(
        "error: DuckDB file ... has the same name as the dataset",
        "name the DuckDB file differently from the dataset (DESTINATION__DUCKDB__CREDENTIALS)",
    ),
    "data_test": Hint(
        "error: sync failed: data test failed: <names> -- <offending rows>",
        "exit status 4: the data loaded, but a data test in sql/tests found offending rows "
        "(shown) or returned no count (a test that proves nothing fails); inspect them in the "
        "destination. Do not retry the sync for it: the same data would load again",
    ),
    "type_drift": Hint(
        "warning: <table>.<column> changed type: dlt added the variant column ...",
        "nothing breaks: the models read the column and its variant (as text when the types "
        "differ, as the column's type for a time or a boolean); queries on the loaded table "
        "should read both too. Shown once, by the sync that added the variant",
    ),
}


def hint(key: str) -> str:
    return HINTS[key].action


def troubleshooting_markdown() -> str:
    """The README's Troubleshooting section body."""
    lines = [
        "Every failure ends the sync with a non-zero exit status (1 failed, 2 configuration, "
        "3 another sync running, 4 loaded but a data test failed) and one line on stderr; "
        "`--verbose` adds the traceback. Data and state already loaded stay as they were: the "
        "next sync resumes.",
        "",
        "| you see | what to do |",
        "| --- | --- |",
    ]
    for entry in HINTS.values():
        lines.append(f"| `{entry.symptom}` | {entry.action} |")
    return "\n".join(lines)
