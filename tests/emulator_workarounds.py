"""Every test-only workaround for a gap of the warehouse emulators the tests use, in one place.

Snowflake is emulated by ``fakesnow`` (server mode) and BigQuery by ``bqemulator``; both run on
DuckDB and pin sqlglot and duckdb versions that conflict with ours, so each runs from a venv of
its own (``.venv-fakesnow``, ``.venv-bqemulator``, built by ``make test-warehouses``), as a
process started from this file:

    .venv-fakesnow/bin/python -I tests/emulator_workarounds.py snowflake --port 0
    .venv-bqemulator/bin/python -I tests/emulator_workarounds.py bigquery --port 0

Each patches its emulator (one function per gap, its comment saying what the emulator gets
wrong and what the real warehouse does), serves on 127.0.0.1 (port 0: the OS picks a free one,
so no two test workers race for a port) and prints one readiness line with its port on stdout;
everything it logs goes to stderr. The fixtures that start them are
``tests/snowflake_emulator.py`` and ``tests/bigquery_emulator.py``.

The client-side workarounds (what must be set in our own process: BigQuery's endpoint,
credentials, uncompressed load files) are at the end. Nothing in ``pipelines/`` works around an
emulator: where an emulator refused SQL that the real warehouse accepts, the SQL was changed to
something all of them accept (``pipelines/models/compiler.py``: BigQuery's ``DATE(ts, zone)``;
``sql/marts``: COUNT instead of SUM of ones).

Only the standard library is imported at module level: our venv imports this module too (the
fixtures read its constants and client-side functions) and has neither emulator installed.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve()

# =============================================================================================
# Snowflake: fakesnow[server]==0.12.1 (tests/emulators/fakesnow.txt)
# =============================================================================================

FAKESNOW_READY = "FAKESNOW_READY"


def fakesnow_command(python: Path | str, port: int = 0) -> list[str]:
    """The command that starts the patched Snowflake emulator with its venv's ``python``; it
    stops when its stdin closes, so a test process that dies takes it along."""
    return [str(python), "-I", str(SCRIPT), "snowflake", "--port", str(port),
            "--exit-on-stdin-eof"]


# --- Gap 1: several statements in one request -------------------------------------------------
# dlt's Snowflake client executes with num_statements=0 ("any number"), sending e.g. all its
# CREATE TABLE statements, or a merge's DELETE and INSERT, as one text separated by ';'. Real
# Snowflake runs them all, in order, stopping at the first error (and answers with a parent
# result whose children the connector reads with nextset()). fakesnow runs one statement per
# request: sqlglot parses such a text as one Block, which fakesnow can neither run nor describe
# ("syntax error at or near CREATE" on DESCRIBE CREATE TABLE …). Emulator side: the query route
# splits the text at the top-level ';' (by sqlglot's Snowflake tokenizer, so a ';' in a string
# or comment stays put), runs each statement as its own request on the same session (so in the
# same transaction), stops at the first failure and answers with the last statement's result
# (dlt reads no result of a multi-statement text).

def split_statements(sql: str) -> list[str]:
    """``sql``'s statements, cut at top-level semicolons, each exactly as written."""
    from sqlglot.dialects.snowflake import Snowflake
    from sqlglot.tokens import TokenType

    statements, start = [], 0
    for token in Snowflake().tokenize(sql):
        if token.token_type == TokenType.SEMICOLON:
            statements.append(sql[start:token.start])
            start = token.end + 1
    statements.append(sql[start:])
    return [statement.strip() for statement in statements if statement.strip()]


def run_statements_one_by_one(server: Any) -> None:
    """Wraps ``fakesnow.server``'s query route to run a multi-statement text statement by
    statement (see Gap 1)."""
    from starlette.requests import Request

    original: Callable = server.query_request

    async def query_request(request: Request) -> Any:
        body = await request.body()  # cached: the original handler reads it again
        gzipped = request.headers.get("Content-Encoding") == "gzip"
        payload = json.loads(gzip.decompress(body) if gzipped else body)
        statements = split_statements(payload.get("sqlText") or "")
        if len(statements) <= 1 or payload.get("bindings"):
            return await original(request)
        response = None
        for statement in statements:
            one = json.dumps({**payload, "sqlText": statement}).encode()
            response = await original(replay(request, gzip.compress(one) if gzipped else one))
            if response.status_code != 200 or not json.loads(response.body).get("success"):
                break  # Snowflake stops a multi-statement text at its first error
        return response

    def replay(request: Request, body: bytes) -> Request:
        async def receive() -> dict:
            return {"type": "http.request", "body": body, "more_body": False}

        return Request(request.scope, receive)

    replace_query_route(server, query_request)


def replace_query_route(server: Any, endpoint: Callable) -> None:
    """Serves ``endpoint`` in place of the current ``server.query_request``."""
    from starlette.routing import Route

    current = server.query_request
    server.query_request = endpoint
    for index, route in enumerate(server.routes):
        if getattr(route, "endpoint", None) is current:
            server.routes[index] = Route(route.path, endpoint, methods=list(route.methods))
    server.app.router.routes[:] = server.routes


# --- Gap 2: PUT to a stage location written as a string literal -------------------------------
# dlt writes PUT 'file:///…' '@"SCHEMA"."%TABLE"/"<load_id>"': the stage location as a quoted
# string, which real Snowflake accepts (and requires when the location has special characters).
# fakesnow takes the target's text with the quotes, then refuses it as "does not start with @".
# Emulator side: a target that is a string literal is read as the literal's value. The path
# ("<load_id>" with its double quotes) is left as written, exactly as the COPY that follows
# names it, so both address the same stage folder.

def unquote_literal(text: str) -> str:
    """``'…'`` as Snowflake reads a string literal (``''`` and backslash escapes); other text
    unchanged."""
    if len(text) < 2 or text[0] != "'" or text[-1] != "'":
        return text
    body, out, index = text[1:-1], [], 0
    while index < len(body):
        char = body[index]
        if char in "'\\" and index + 1 < len(body):
            out.append(body[index + 1])
            index += 2
        else:
            out.append(char)
            index += 1
    return "".join(out)


def read_put_target_literal(transforms: Any) -> None:
    """Wraps ``fakesnow.transforms.put_stage`` (see Gap 2)."""
    from sqlglot import exp

    original: Callable = transforms.put_stage

    def put_stage(expression: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(expression, exp.Put):
            target = expression.args.get("target")
            if isinstance(target, exp.Var) and target.text("this").startswith("'"):
                target.set("this", unquote_literal(target.text("this")))
        return original(expression, *args, **kwargs)

    transforms.put_stage = put_stage


# --- Gaps 3 and 4: dlt's COPY INTO options ----------------------------------------------------
# dlt writes FILE_FORMAT = (TYPE = 'PARQUET', BINARY_AS_TEXT = FALSE, USE_LOGICAL_TYPE = TRUE, …)
# with commas between the options, and MATCH_BY_COLUMN_NAME='CASE_INSENSITIVE' with the value
# quoted; real Snowflake accepts both (options may be separated by commas or blanks; an
# enumerated value may be quoted). fakesnow's sqlglot 30.22 parses each comma as an empty
# SequenceProperties, which fakesnow's option parser refuses ("is not a Property") (Gap 3), and
# fakesnow reads MATCH_BY_COLUMN_NAME only as a bare word (NotImplementedError for a string)
# (Gap 4). Emulator side: before fakesnow's COPY runs, the empty separators are dropped and a
# quoted MATCH_BY_COLUMN_NAME becomes the bare word it means.

def drop_empty_option_separators(copy: Any) -> None:
    """Gap 3: no empty SequenceProperties among a COPY's FILE_FORMAT options."""
    from sqlglot import exp

    for param in copy.args.get("params") or []:
        options = param.args.get("expressions")
        if options:
            param.set("expressions", [option for option in options
                                      if not (isinstance(option, exp.SequenceProperties)
                                              and not option.expressions)])


def bare_match_by_column_name(copy: Any) -> None:
    """Gap 4: MATCH_BY_COLUMN_NAME='CASE_INSENSITIVE' read as =CASE_INSENSITIVE."""
    from sqlglot import exp

    for param in copy.args.get("params") or []:
        value = param.args.get("expression")
        if (param.this.name.upper() == "MATCH_BY_COLUMN_NAME" and isinstance(value, exp.Literal)
                and value.is_string):
            param.set("expression", exp.var(value.this))


def normalize_copy_options(cursor_module: Any) -> None:
    """Wraps the ``copy_into`` fakesnow's cursor calls (see Gaps 3 and 4)."""
    original: Callable = cursor_module.copy_into

    def copy_into(duck_conn: Any, current_database: Any, current_schema: Any, expr: Any,
                  *args: Any, **kwargs: Any) -> Any:
        drop_empty_option_separators(expr)
        bare_match_by_column_name(expr)
        return original(duck_conn, current_database, current_schema, expr, *args, **kwargs)

    cursor_module.copy_into = copy_into


# --- Gap 5: JSON loaded by column name ----------------------------------------------------------
# Our data loads as parquet to Snowflake (PARQUET_DESTINATIONS in
# pipelines/micrometrics/runner.py), but dlt still writes its own state table
# (_dlt_pipeline_state) as gzipped JSONL, loaded by COPY … FILE_FORMAT = (TYPE = 'JSON', …)
# MATCH_BY_COLUMN_NAME='CASE_INSENSITIVE'. Real Snowflake puts each top-level key into the
# column of that name. fakesnow reads JSON only as one VARIANT value per row (read_json_objects),
# whatever MATCH_BY_COLUMN_NAME says, and the insert into the 8-column table fails ("8 columns
# but 1 values were supplied"). Emulator side: a JSON COPY with MATCH_BY_COLUMN_NAME takes
# fakesnow's parquet by-name path, reading the file with DuckDB's read_json (newline-delimited,
# one column per top-level key, its compression detected from the file name).

def load_json_by_column_name(copy_module: Any) -> None:
    """Wraps fakesnow's COPY option parsing and file description (see Gap 5)."""
    from sqlglot import exp

    read_parquet = copy_module.ReadParquet

    class ReadJSONByName(read_parquet):  # the by-name loader only takes a ReadParquet
        def read_expression(self, url: str) -> Any:
            return exp.func("read_json", self.file_literal(url),
                            self.make_eq("format", "newline_delimited"))

    original_params: Callable = copy_module._params
    original_columns: Callable = copy_module._get_parquet_column_names

    def params(*args: Any, **kwargs: Any) -> Any:
        found = original_params(*args, **kwargs)
        if (isinstance(found.file_format, copy_module.ReadJSON)
                and found.match_by_column_name != copy_module.MatchByColumnName.NONE):
            found.file_format = ReadJSONByName()
        return found

    def column_names(url: str, duck_conn: Any) -> list[str]:
        if ".json" not in url.rsplit("/", 1)[-1]:
            return original_columns(url, duck_conn)
        read = ReadJSONByName().read_expression(url).sql(dialect="duckdb")
        return [row[0] for row in duck_conn.execute(f"DESCRIBE SELECT * FROM {read}").fetchall()]

    copy_module._params = params
    copy_module._get_parquet_column_names = column_names


# --- Gap 6: NULL timestamps read back as 1970-01-01 -------------------------------------------
# Snowflake's result format sends a timestamp as a struct (epoch, fraction[, timezone]); a NULL
# timestamp is a NULL struct, which the connector returns as None. fakesnow builds that struct
# without a validity mask, so a NULL timestamp arrives as a valid struct of nulls that the
# connector reads as epoch 0: every NULL deleted_at, valid_to or first_response_at came back as
# 1970-01-01 00:00:00. Emulator side: the struct is NULL where the timestamp is (its fields 0).

def null_timestamps_stay_null(arrow: Any) -> None:
    """Wraps ``fakesnow.arrow.timestamp_to_sf_struct`` (see Gap 6)."""
    import pyarrow as pa

    original: Callable = arrow.timestamp_to_sf_struct

    def timestamp_to_sf_struct(ts: Any) -> Any:
        struct = original(ts)
        if isinstance(ts, pa.ChunkedArray):
            ts = ts.combine_chunks()
        if not ts.null_count:
            return struct
        fields = [struct.type.field(index) for index in range(struct.type.num_fields)]
        children = [struct.field(index).fill_null(0) for index in range(len(fields))]
        return pa.StructArray.from_arrays(children, fields=fields, mask=ts.is_null())

    arrow.timestamp_to_sf_struct = timestamp_to_sf_struct


# --- Gap 7: a statement fakesnow cannot handle hangs the client -----------------------------
# When fakesnow meets SQL it does not implement (an exception it did not expect: an assertion, a
# NotImplementedError...), it answers HTTP 500, and the connector retries a 500 with backoff,
# for many minutes (a test hangs instead of failing). Real Snowflake answers a statement it
# cannot run with an error (success: false, an error code), which the connector raises at once.
# Emulator side: a 500 from the query route becomes such an error, its message naming the
# exception (the traceback stays in the emulator's log).

def fail_fast_on_unhandled_errors(server: Any) -> None:
    """Wraps the query route: HTTP 500 answers become Snowflake errors (see Gap 7)."""
    import contextvars
    import logging

    from starlette.responses import JSONResponse

    unhandled: contextvars.ContextVar[str | None] = contextvars.ContextVar(
        "fakesnow_unhandled", default=None)

    class Remember(logging.Filter):  # fakesnow logs the exception just before it answers 500
        def filter(self, record: logging.LogRecord) -> bool:
            if record.exc_info and record.exc_info[1] is not None:
                error = record.exc_info[1]
                unhandled.set(f"{type(error).__name__}: {error}")
            return True

    server.logger.addFilter(Remember())
    original: Callable = server.query_request

    async def query_request(request: Any) -> Any:
        unhandled.set(None)
        response = await original(request)
        if response.status_code != 500:
            return response
        message = json.loads(response.body).get("message") or ""
        return JSONResponse({
            "data": {"errorCode": "000603", "sqlState": "XX000"},
            "code": "000603",
            "message": (f"fakesnow could not run this statement ({unhandled.get() or 'unhandled'}"
                        f"; traceback in the emulator's log): {message[:2000]}"),
            "success": False,
        })

    replace_query_route(server, query_request)


# --- Gap 8: INFORMATION_SCHEMA.TABLES without the views -----------------------------------
# Snowflake lists a schema's views in INFORMATION_SCHEMA.TABLES (TABLE_TYPE 'VIEW'), which the
# models' build reads to find a model's name of the other kind (a view now built as a table).
# fakesnow's TABLES lists DuckDB's tables only, every one as 'BASE TABLE'. Emulator side: its
# definition (created with each database) reads DuckDB's views too, as 'VIEW' (no row count).

def information_schema_tables_list_views(info_schema: Any) -> None:
    """Rewrites ``fakesnow.info_schema``'s TABLES view definition (see Gap 8)."""
    from string import Template

    text = info_schema.SQL_CREATE_INFORMATION_SCHEMA_TABLES_VIEW.template
    relations = ("(SELECT database_name, schema_name, table_name, estimated_size, "
                 "'BASE TABLE' AS table_type FROM duckdb_tables UNION ALL "
                 "SELECT database_name, schema_name, view_name, NULL, 'VIEW' "
                 "FROM duckdb_views) tables")
    patched = (text.replace("'BASE TABLE' AS \"TABLE_TYPE\"", "tables.table_type AS \"TABLE_TYPE\"")
               .replace("from duckdb_tables tables", f"from {relations}"))
    if patched.count("tables.table_type") != 1 or "duckdb_views" not in patched:
        raise RuntimeError("fakesnow's INFORMATION_SCHEMA.TABLES is not the one Gap 8 patches")
    info_schema.SQL_CREATE_INFORMATION_SCHEMA_TABLES_VIEW = Template(patched)


# --- All of them, and the server (Snowflake) --------------------------------------------------

def patch_fakesnow() -> None:
    """Applies every workaround above to the fakesnow in this process."""
    import fakesnow.arrow
    import fakesnow.copy_into
    import fakesnow.cursor
    import fakesnow.info_schema
    import fakesnow.server
    import fakesnow.transforms

    run_statements_one_by_one(fakesnow.server)
    read_put_target_literal(fakesnow.transforms)
    normalize_copy_options(fakesnow.cursor)
    load_json_by_column_name(fakesnow.copy_into)
    null_timestamps_stay_null(fakesnow.arrow)
    information_schema_tables_list_views(fakesnow.info_schema)
    fail_fast_on_unhandled_errors(fakesnow.server)  # last: around the other route wrappers


def serve_fakesnow(port: int, host: str = "127.0.0.1", exit_on_stdin_eof: bool = False) -> None:
    """Runs the patched emulator until SIGTERM/SIGINT (or, with ``exit_on_stdin_eof``, until
    its stdin closes: the test process that holds it died); prints ``FAKESNOW_READY <port>`` once
    listening."""
    import threading

    import uvicorn

    patch_fakesnow()
    import fakesnow.server

    class Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets=sockets)
            if not self.should_exit:
                bound = self.servers[0].sockets[0].getsockname()[1]
                print(f"{FAKESNOW_READY} {bound}", flush=True)
                os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # the rest goes to the log

    config = uvicorn.Config(fakesnow.server.app, host=host, port=port, log_level="info",
                            access_log=False)
    server = Server(config)
    if exit_on_stdin_eof:
        def watch_parent() -> None:
            sys.stdin.buffer.read()  # returns at EOF
            server.should_exit = True

        threading.Thread(target=watch_parent, name="stdin watch", daemon=True).start()
    server.run()


# =============================================================================================
# BigQuery: bqemulator==1.4.0 (tests/emulators/bqemulator.txt)
# =============================================================================================

BIGQUERY_READY = "bqemulator ready"
# The emulator accepts any project id, but its check of their format wrongly refuses an id that
# ends in a hyphen and one character ("my-project-1", valid in Google Cloud): a query on a
# missing dataset of such a project is answered "Access Denied" instead of "Not found: Dataset",
# which dlt does not read as "nothing loaded yet". The tests' project ids have no hyphen.
BIGQUERY_PROJECT = "micrometricstest"
BIGQUERY_LOCATION = "US"

def bigquery_skip_spatial_extension() -> None:
    """bqemulator runs ``INSTALL spatial; LOAD spatial`` when its DuckDB engine starts and
    refuses to start when that fails, and INSTALL downloads the extension from
    extensions.duckdb.org (no network in the tests). Real BigQuery has GEOGRAPHY built in; our
    SQL never uses it, so the engine starts without the extension (ST_* functions would fail).
    The emulator's other download, the best-effort avro extension, is turned off by a setting
    (``enable_format_extensions=False`` in ``serve_bigquery_emulator``)."""
    from bqemulator.storage.engine import DuckDBEngine

    DuckDBEngine._load_spatial = lambda self: None


def bigquery_alter_table_updates_catalog() -> None:
    """Real BigQuery shows a column in INFORMATION_SCHEMA.COLUMNS and tables.get as soon as
    ``ALTER TABLE … ADD COLUMN`` added it. bqemulator adds it to its DuckDB table but not to its
    catalog, which serves both: dlt reads INFORMATION_SCHEMA.COLUMNS to decide which columns to
    add, so the next schema change after a type drift (a variant column) added the same column
    again and failed ("Column … already exists"). Here, after every statement the emulator
    syncs into its catalog, an ``ALTER TABLE`` refreshes that table's catalog schema from
    DuckDB."""
    import sqlglot
    from bqemulator.catalog import ddl_sync
    from bqemulator.jobs import executor
    from bqemulator.scripting import interpreter
    from sqlglot import exp

    sync_created_table = ddl_sync.sync_created_table

    def sync_created_or_altered_table(bq_sql: str, project_id: str, ctx: Any) -> None:
        sync_created_table(bq_sql, project_id, ctx)
        try:
            tree = sqlglot.parse_one(bq_sql, read="bigquery")
        except Exception:  # noqa: BLE001 - not one statement we can read: nothing altered
            return
        if not isinstance(tree, exp.Alter) or (tree.args.get("kind") or "").upper() != "TABLE":
            return
        project, dataset, table = ddl_sync._split_target(tree.this, project_id)
        meta = ctx.catalog.get_table(project, dataset, table)
        if meta is not None:
            schema = ddl_sync._introspect_schema(project, dataset, table, ctx)
            ctx.catalog.update_table(meta.model_copy(update={"schema_": schema}))

    executor.sync_created_table = sync_created_or_altered_table
    interpreter.sync_created_table = sync_created_or_altered_table


def bigquery_one_alter_action_a_statement() -> None:
    """When one load adds two columns to a table, dlt sends ``ALTER TABLE t ADD COLUMN a ...,
    ADD COLUMN b ...``, which BigQuery takes; the emulator's DuckDB refuses it ("Only one
    ALTER command per statement is supported"), and the package then failed every sync. Here
    such a statement runs as one ALTER per action."""
    import sqlglot
    from bqemulator.storage.engine import DuckDBEngine
    from sqlglot import exp

    execute = DuckDBEngine.execute

    def one_action_at_a_time(self: Any, sql: str, parameters: Any = None) -> Any:
        if sql.lstrip()[:5].upper() != "ALTER" or sql.upper().count(" ADD ") < 2:
            return execute(self, sql, parameters)
        try:
            tree = sqlglot.parse_one(sql, read="duckdb")
        except Exception:  # noqa: BLE001 - not one statement we can read: as it is
            return execute(self, sql, parameters)
        actions = (tree.args.get("actions") or []) if isinstance(tree, exp.Alter) else []
        if len(actions) < 2:
            return execute(self, sql, parameters)
        result = None
        for action in actions:
            one = tree.copy()
            one.set("actions", [action.copy()])
            result = execute(self, one.sql(dialect="duckdb"), parameters)
        return result

    DuckDBEngine.execute = one_action_at_a_time


# Status codes real BigQuery answers with, by error reason (the emulator's own mapping for the
# errors it does raise as HTTP errors: bqemulator.domain.errors).
HTTP_STATUS_BY_REASON = {"notFound": 404, "duplicate": 409, "accessDenied": 403}
HTTP_STATUS_TEXT = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                    409: "ALREADY_EXISTS"}


def failed_query_error(body: Any) -> tuple[int, dict[str, Any]] | None:
    """The HTTP error real BigQuery answers for a ``jobs.query`` response body of the emulator's,
    or None when the query did not fail."""
    if not isinstance(body, dict) or body.get("kind") != "bigquery#queryResponse":
        return None
    errors = body.get("errors")
    if not errors or not isinstance(errors, list):
        return None
    first = errors[0] if isinstance(errors[0], dict) else {"message": str(errors[0])}
    reason = first.get("reason") or "invalidQuery"
    status = HTTP_STATUS_BY_REASON.get(reason, 400)
    message = first.get("message") or "query failed"
    return status, {"error": {"code": status, "message": message,
                              "errors": [{"domain": "global", **first, "reason": reason}],
                              "status": HTTP_STATUS_TEXT.get(status, "INVALID_ARGUMENT")}}


class BigQueryFailedQueryAsHttpError:
    """ASGI middleware in front of bqemulator's app.

    bqemulator answers a ``jobs.query`` (``POST /bigquery/v2/projects/<p>/queries``) whose SQL
    fails with HTTP 200, ``jobComplete: true``, no rows and an ``errors`` list. Real BigQuery
    answers such a query with an HTTP error (400 ``invalidQuery``, 404 ``notFound``, ...), and
    google-cloud-bigquery relies on that: it reads the emulator's 200 as an empty result, so a
    model that failed to build looked built and a data test that failed looked like it passed.
    This turns those answers into the HTTP error real BigQuery sends (status by reason, the
    ``{"error": {"code", "message", "errors": [...]}}`` body google.api_core reads).
    """

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if (scope.get("type") != "http" or scope.get("method") != "POST"
                or not scope.get("path", "").endswith("/queries")):
            await self.app(scope, receive, send)
            return
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def hold(message: dict) -> None:  # the whole answer, then decide
            if message["type"] == "http.response.start":
                start.update(message)
                return
            if message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            body = b"".join(chunks)
            error = None
            if start.get("status") == 200:
                try:
                    error = failed_query_error(json.loads(body))
                except ValueError:
                    error = None
            if error is not None:
                status, payload = error
                body = json.dumps(payload).encode()
                headers = [(k, v) for k, v in start.get("headers", [])
                           if k.lower() not in (b"content-length", b"content-type")]
                start.update(status=status, headers=[
                    *headers, (b"content-type", b"application/json; charset=UTF-8"),
                    (b"content-length", str(len(body)).encode())])
            await send(start)
            await send({"type": "http.response.body", "body": body, "more_body": False})

        await self.app(scope, receive, hold)


async def serve_bigquery_emulator(port: int, http_errors: bool) -> None:
    """Starts bqemulator in this event loop (REST on 127.0.0.1:``port``, gRPC on a free port),
    prints the readiness line and serves until SIGTERM or SIGINT."""
    # Only the readiness line goes to stdout; everything else (bqemulator prints some lines
    # there) goes to stderr, so a reader of stdout never has to drain it.
    sys.stdout.flush()
    ready = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    from bqemulator import server as bq_server
    from bqemulator.config import LogLevel, PersistenceMode, Settings

    bigquery_skip_spatial_extension()
    bigquery_alter_table_updates_catalog()
    bigquery_one_alter_action_a_statement()
    if http_errors:
        create_app = bq_server.create_app
        bq_server.create_app = lambda context: BigQueryFailedQueryAsHttpError(create_app(context))
    settings = Settings(
        rest_host="127.0.0.1", rest_port=port, grpc_host="127.0.0.1", grpc_port=0,
        persistence_mode=PersistenceMode.EPHEMERAL, default_project_id=BIGQUERY_PROJECT,
        enable_format_extensions=False,  # no avro download either
        metrics_enabled=False, log_level=LogLevel.WARNING,
    )
    emulator = bq_server.EmulatorServer(settings)
    await emulator.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    with ready:
        print(f"{BIGQUERY_READY} http://127.0.0.1:{emulator.rest_port}", file=ready)
    try:
        await stop.wait()
    finally:
        await emulator.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="a warehouse emulator with the tests' workarounds; run it with that "
                    "emulator's venv python (-I), it prints a readiness line with its port")
    emulators = parser.add_subparsers(dest="emulator", required=True)
    snowflake = emulators.add_parser("snowflake", help="fakesnow's server, patched for dlt")
    snowflake.add_argument("--port", type=int, default=0, help="0: a free port the OS picks")
    snowflake.add_argument("--host", default="127.0.0.1")
    snowflake.add_argument("--exit-on-stdin-eof", action="store_true",
                           help="stop when stdin closes (a test fixture holds it open)")
    bigquery = emulators.add_parser("bigquery", help="bqemulator, patched")
    bigquery.add_argument("--port", type=int, default=0, help="REST port (0: a free one)")
    bigquery.add_argument("--no-http-errors", dest="http_errors", action="store_false",
                          help="leave failed queries as the emulator answers them (HTTP 200)")
    args = parser.parse_args(argv)
    if args.emulator == "snowflake":
        serve_fakesnow(args.port, args.host, args.exit_on_stdin_eof)
    else:
        asyncio.run(serve_bigquery_emulator(args.port, args.http_errors))
    return 0


# ---------------------------------------------------------------------------------------------
# Client side (our venv)
# ---------------------------------------------------------------------------------------------


def bigquery_client_env(url: str, project: str = BIGQUERY_PROJECT) -> dict[str, str]:
    """Environment for google-cloud-bigquery and dlt's bigquery destination on the emulator.

    * ``BIGQUERY_EMULATOR_HOST``: google-cloud-bigquery sends every request (uploads too) there
      instead of https://bigquery.googleapis.com.
    * ``DATA_WRITER__DISABLE_COMPRESSION``: bqemulator cannot read gzipped JSONL load files;
      real BigQuery reads them. dlt gzips by default and writes its state table as JSONL even
      when the data goes as parquet, so compression is off.
    * project id and location: dlt's bigquery destination takes the project from the
      credentials (here from ``google.auth.default``, see ``use_anonymous_google_credentials``)
      unless ``project_id`` is set, and creates datasets in ``location`` (default "US"; the
      emulator accepts any project and reports every job in "US").
    """
    return {
        "BIGQUERY_EMULATOR_HOST": url,
        "DATA_WRITER__DISABLE_COMPRESSION": "true",
        "DESTINATION__BIGQUERY__PROJECT_ID": project,
        "DESTINATION__BIGQUERY__LOCATION": BIGQUERY_LOCATION,
    }


def anonymous_google_default(project: str = BIGQUERY_PROJECT) -> Callable[..., tuple]:
    """A stand-in for ``google.auth.default``: anonymous credentials and ``project``."""

    def default(*args: Any, **kwargs: Any) -> tuple:
        from google.auth.credentials import AnonymousCredentials

        return AnonymousCredentials(), project

    return default


def use_anonymous_google_credentials(monkeypatch: Any, project: str = BIGQUERY_PROJECT) -> None:
    """The emulator needs no credentials, but google-cloud-bigquery and dlt look for them:
    dlt's bigquery destination, given none, asks ``google.auth.default`` (application default
    credentials), which finds nothing on a test machine and would try the GCE metadata server.
    Real BigQuery needs real credentials (a service account, or ADC); here
    ``google.auth.default`` answers anonymous credentials for ``project``."""
    import google.auth
    from dlt.common.configuration.specs.gcp_credentials import GcpDefaultCredentials

    monkeypatch.setattr(google.auth, "default", anonymous_google_default(project))
    # dlt remembers a failed lookup for 10 minutes: forget one an earlier test may have made.
    monkeypatch.setattr(GcpDefaultCredentials, "_LAST_FAILED_DEFAULT", 0.0)


if __name__ == "__main__":
    sys.exit(main())
