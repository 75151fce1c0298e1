"""``make demo`` end to end, as a newcomer runs it (in a scratch directory), report included."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_demo_syncs_builds_models_and_shows_marts(tmp_path):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SOURCES__", "DESTINATION__", "DLT_"))}
    env["PYTHONPATH"] = str(ROOT)
    result = subprocess.run([sys.executable, "-m", "pipelines.demo"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "survey_responses                6000            6000" in out
    assert "429s received 0" in out and "data tests passed" in out
    *_, explore, last = out.rstrip().splitlines()
    assert explore.startswith("explore it: duckdb demo.duckdb")
    # The way without the duckdb command line (not in the Python package) works as printed.
    code = explore.split(' -c "', 1)[1].rsplit('")', 1)[0]
    shown = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                           text=True, timeout=60)
    assert shown.returncode == 0 and "mart_nps_daily" in shown.stdout, shown.stderr
    assert "devices gone quiet (dim_devices)" in out
    assert (tmp_path / "demo.duckdb").exists() and (tmp_path / ".demo").is_dir()
    # It ends with the report of the demo's marts, written next to demo.duckdb.
    report = tmp_path / "report.html"
    assert last == f"report: {report.resolve()}"
    html = report.read_text(encoding="utf-8")
    assert html.count("* plotly.js v") == 1  # plotly.js inline, once
    scripts = re.findall(r"<script\b[^>]*>", html)
    assert scripts and not any("src" in tag for tag in scripts)
    outside_scripts = re.sub(r"<script\b.*?</script>", "", html, flags=re.DOTALL)
    assert not any(ref in outside_scripts for ref in ("src=", "href=", "url(", "http", "<link"))
    assert html.count('class="figure"') == 3 and "6,000 responses" in html
