"""``python -m benchmarks``: every scenario, every contender, one report.

    plan each scenario -> run its trials in interleaved rounds -> summarize
    -> <out>/latest.md (also printed), <out>/latest.png, <out>/latest.json

``--quick`` shrinks the workloads and defaults to 3 runs, to check the suite
works in under two minutes; its numbers are noisier than a full run's.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks._chart import write_chart
from benchmarks._harness import failure_notes, leftover_notes, run_plan
from benchmarks._report import Section, environment, render, write_markdown
from benchmarks.scenarios import ORDER

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
MIN_RUNS = 3


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    runs = args.runs if args.runs is not None else (MIN_RUNS if args.quick else 5)
    out_dir = args.out.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    mode = "quick" if args.quick else "full"
    env = environment(mode, runs)

    started_s = time.monotonic()
    sections: list[Section] = []
    raw: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="paas-bench-") as workdir:
        for name in args.only or ORDER:
            section, raw[name] = _run_scenario(name, args.quick, runs, Path(workdir))
            sections.append(section)
    env["Total time"] = f"{time.monotonic() - started_s:.0f} s"

    text = render(env, sections)
    markdown_path = write_markdown(out_dir, text)
    chart_path = write_chart(
        out_dir, sections, f"paas benchmarks ({mode}, {runs} runs)"
    )
    (out_dir / "latest.json").write_text(json.dumps({"env": env, "raw": raw}, indent=1))
    print(text)
    _log(f"Wrote {markdown_path} and {chart_path}")
    return 0


def _run_scenario(
    name: str, quick: bool, runs: int, workdir: Path
) -> tuple[Section, dict[str, Any]]:
    scenario = importlib.import_module(f"benchmarks.scenarios.{name}")
    plan = scenario.plan(quick)
    _log(f"{name}: {len(plan.contenders)} contenders x {runs} runs")
    results = run_plan(plan, runs, workdir, _log)
    section: Section = scenario.summarize(plan, results)
    section.notes += failure_notes(results) + leftover_notes(results)
    return section, {"params": dict(plan.params), "results": results}


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Compare paas with multiprocessing.Pool, ProcessPoolExecutor, "
        "loky and pebble; report medians, ranges and ratios.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="small workloads (under 2 minutes)"
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=None,
        help=f"runs per contender, at least {MIN_RUNS} (default 5, quick {MIN_RUNS})",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help="directory for latest.md, latest.png and latest.json "
        "(default benchmarks/results)",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=ORDER,
        help="run only these scenarios",
    )
    args = parser.parse_args(argv)
    if args.runs is not None and args.runs < MIN_RUNS:
        parser.error(f"--runs must be >= {MIN_RUNS}, got {args.runs}")
    return args


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
