"""Where a profiled sync's CPU goes: a summary of py-spy raw (collapsed) stacks.

``benchmarks.scale --profile DIR`` runs the connector under ``py-spy record --format raw``
(idle threads are not sampled, so samples are CPU). This prints, as shares of all samples:
the dlt phases and our code, inclusive (a sample counts for every phase on its stack); the
layer each sample's innermost frame belongs to (exclusive); and the top functions by own and
by inclusive samples.

    .venv/bin/python -m benchmarks.profile_summary DIR/200k-first-sync-before.txt [--top 25]
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^():]*)(?::(?P<line>\d+))?\)$")

# Inclusive phases: a sample counts for each of these it has on its stack.
PHASES = [
    ("dlt extract (pipeline.extract: our resources run inside it)", "Pipeline.extract"),
    ("dlt normalize", "Pipeline.normalize"),
    ("dlt load", "Pipeline.load"),
    ("our resources' generators (pipelines/micrometrics, incl. HTTP they call)",
     "pipelines/micrometrics/source.py"),
    ("HTTP (requests, urllib3, http.client, socket)", "requests/"),
    ("JSON decode of responses (Response.json)", "Response.json"),
    ("pyarrow / parquet writing", "pyarrow/"),
    ("duckdb", "duckdb"),
    ("dlt schema/config resolution (resolve_configuration)", "resolve_configuration"),
    ("dlt state / schema save (json dumps, storage)", "save_schema"),
    ("interpreter start and imports (<module>, _find_and_load)", "_find_and_load"),
]

# Exclusive layers, by the file of the innermost frame.
LAYERS = [
    ("our code (pipelines/)", ("pipelines/",)),
    ("dlt extract", ("dlt/extract/",)),
    ("dlt normalize", ("dlt/normalize/",)),
    ("dlt load / destinations", ("dlt/load/", "dlt/destinations/")),
    ("dlt common (schema, json, storages, config, data writers)", ("dlt/common/",)),
    ("dlt other", ("dlt/",)),
    ("JSON (json, orjson, simplejson)", ("json/", "orjson", "simplejson")),
    ("HTTP (requests, urllib3, http, socket, ssl)",
     ("requests/", "urllib3/", "http/", "socket.py", "ssl.py", "selectors.py")),
    ("pyarrow", ("pyarrow/",)),
    ("duckdb", ("duckdb",)),
    ("pendulum / dateutil", ("pendulum/", "dateutil/")),
    ("hashing, copying, typing (stdlib)", ("hashlib", "copy.py", "typing.py", "hmac.py")),
]


def parse(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            frames = stack.split(";")[1:]  # drop "process N"
            if frames:
                stacks.append((frames, int(count)))
    return stacks


def layer_of(frame: str) -> str:
    match = FRAME.match(frame)
    file = match.group("file") if match else frame
    for name, needles in LAYERS:
        if any(n in file for n in needles):
            return name
    return "other (stdlib, interpreter)"


def summary(path: Path, top: int) -> str:
    stacks = parse(path)
    total = sum(count for _, count in stacks) or 1
    phases: Counter[str] = Counter()
    layers: Counter[str] = Counter()
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for frames, count in stacks:
        for label, needle in PHASES:
            if any(needle in f for f in frames):
                phases[label] += count
        layers[layer_of(frames[-1])] += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    out = [f"{path.name}: {total} samples", "", "| phase (inclusive) | share |", "|---|---:|"]
    out += [f"| {label} | {phases[label] / total:.1%} |" for label, _ in PHASES]
    out += ["", "| layer of the innermost frame (exclusive) | share |", "|---|---:|"]
    out += [f"| {name} | {n / total:.1%} |" for name, n in layers.most_common()]
    out += ["", "| function (own samples) | share |", "|---|---:|"]
    out += [f"| `{f}` | {n / total:.1%} |" for f, n in own.most_common(top)]
    skip = ("<module>", "run_module", "_run_module_code", "_run_code", "_wrap", "main (")
    out += ["", "| function (inclusive) | share |", "|---|---:|"]
    out += [f"| `{f}` | {n / total:.1%} |" for f, n in inclusive.most_common(top * 4)
            if not any(s in f for s in skip)][: top + 4]
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    for path in args.files:
        print(summary(path, args.top))
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
