"""dlt's files between a sync's steps are written uncompressed (a fifth of a large sync's CPU
went to gzip), unless the user configured ``data_writer.disable_compression``."""

import os
from pathlib import Path

from pipelines.micrometrics.dlt_settings import DISABLE_COMPRESSION
from tests.syncing import sync_sandbox

GZIP_MAGIC = b"\x1f\x8b"
SMALL = dict(devices=10, surveys=2, responses=200, rate=1000.0, burst=1000)


def load_files(working_dir: str) -> list[Path]:
    """The files of the load packages a sync left (dlt keeps loaded packages)."""
    return [f for f in Path(working_dir, "load").rglob("*")
            if f.is_file() and "completed_jobs" in f.parts and f.suffix != ".parquet"]


def test_a_sync_writes_dlts_files_uncompressed(start_sandbox, tmp_path, clock):
    sandbox = start_sandbox(clock=clock, **SMALL)
    result = sync_sandbox(sandbox, tmp_path, clock, rate=1000.0, burst=1000)
    files = load_files(result.pipeline.working_dir)
    assert files  # dlt's state rows, merge SQL: text files
    assert not [f for f in files if f.read_bytes()[:2] == GZIP_MAGIC]
    assert DISABLE_COMPRESSION not in os.environ  # the sync's setting ends with it


def test_a_users_compression_setting_is_kept(start_sandbox, tmp_path, clock, monkeypatch):
    monkeypatch.setenv(DISABLE_COMPRESSION, "false")
    sandbox = start_sandbox(clock=clock, **SMALL)
    result = sync_sandbox(sandbox, tmp_path, clock, rate=1000.0, burst=1000)
    assert [f for f in load_files(result.pipeline.working_dir)
            if f.read_bytes()[:2] == GZIP_MAGIC]
    assert os.environ[DISABLE_COMPRESSION] == "false"
