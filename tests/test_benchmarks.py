"""Every benchmark script answers ``--help`` with its usage and runs nothing: three took no
arguments, so ``--help`` ran the benchmark for minutes and rewrote ``benchmarks/RESULTS.md``.
Each runs from a copy of the folder, so one that does run rewrites the copy's results."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.cli import ROOT

BENCHMARKS = sorted(path.stem for path in (ROOT / "benchmarks").glob("*.py")
                    if not path.stem.startswith("_"))


@pytest.mark.parametrize("benchmark", BENCHMARKS)
def test_help_shows_the_usage_and_runs_nothing(tmp_path, benchmark):
    shutil.copytree(ROOT / "benchmarks", tmp_path / "benchmarks",
                    ignore=shutil.ignore_patterns("__pycache__"))
    results = tmp_path / "benchmarks" / "RESULTS.md"
    before = results.read_bytes()
    shown = subprocess.run([sys.executable, "-m", f"benchmarks.{benchmark}", "--help"],
                           cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("usage: "), shown.stdout
    assert results.read_bytes() == before
