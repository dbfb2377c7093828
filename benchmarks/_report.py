"""The results table: Markdown with medians, ranges and ratios to a reference.

A scenario hands over a :class:`Section`: per contender, the headline metric of
each round. Cells show the median and the min-max range over rounds. The ratio
column pairs each round with the reference's value in the same round and takes
the median of those ratios, so a slow stretch on a shared machine that hits one
round hits both sides of its ratio. Ratios are turned so that above 1x always
means better than the reference, whichever way the metric points.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks._harness import Stats

_MISSING = "—"


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    higher_is_better: bool
    digits: int = 2

    def format(self, value: float) -> str:
        return f"{value:,.{self.digits}f}"


@dataclass(frozen=True)
class Target:
    """A goal to show pass or fail: ``measured`` against ``limit``."""

    what: str
    measured: float | None
    limit: float
    unit: str
    at_least: bool

    @property
    def met(self) -> bool | None:
        if self.measured is None:
            return None
        if self.at_least:
            return self.measured >= self.limit
        return self.measured <= self.limit


@dataclass(frozen=True)
class ChartSpec:
    """What a section's chart panel shows, when not its headline metric.

    ``labels`` replace the ratio written over each bar; ``limit`` draws a target
    as a dashed line.
    """

    metric: Metric
    values: dict[str, list[float | None]]
    labels: dict[str, str] = field(default_factory=dict)
    limit: float | None = None


@dataclass
class Section:
    title: str
    workload: str
    metric: Metric
    reference: str
    values: dict[str, list[float | None]]
    extras: dict[str, dict[str, str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    ok_label: str = "ok runs"
    chart: ChartSpec | None = None

    def chart_spec(self) -> ChartSpec:
        if self.chart is not None:
            return self.chart
        labels = {name: format_ratio(self.ratio(name)) for name in self.values}
        return ChartSpec(self.metric, self.values, labels)

    def stats(self, contender: str) -> Stats | None:
        return Stats.of(self.values.get(contender, []))

    def ratio(self, contender: str, against: str | None = None) -> float | None:
        """Median per-round ratio to ``against`` (default: the reference); >1 better."""
        return paired_ratio(
            self.values.get(contender, []),
            self.values.get(against or self.reference, []),
            self.metric.higher_is_better,
        )


def paired_ratio(
    values: Sequence[float | None],
    reference: Sequence[float | None],
    higher_is_better: bool,
) -> float | None:
    ratios = [
        (value / ref if higher_is_better else ref / value)
        for value, ref in zip(values, reference, strict=False)
        if value and ref
    ]
    return statistics.median(ratios) if ratios else None


def format_stats(stats: Stats | None, metric: Metric) -> str:
    if stats is None:
        return _MISSING
    return (
        f"{metric.format(stats.median)} "
        f"({metric.format(stats.low)}-{metric.format(stats.high)})"
    )


def format_values(values: Sequence[float | None], digits: int = 2) -> str:
    """Median (min-max) of per-round values, for columns besides the headline."""
    return format_stats(Stats.of(values), Metric("", "", True, digits))


def format_ratio(ratio: float | None) -> str:
    return _MISSING if ratio is None else f"{ratio:.2f}x"


def environment(mode: str, runs: int) -> dict[str, str]:
    """What a reader needs to judge the numbers: when, where, which versions."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    load_1m, load_5m, _ = os.getloadavg()
    versions = ", ".join(
        f"{name} {_version(name)}"
        for name in ("paas", "loky", "pebble", "chiavdf", "pyzmq")
    )
    return {
        "Date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "Cores": f"{os.cpu_count()} logical, {usable} usable by this process",
        "Load average at start": f"{load_1m:.2f} (1 min), {load_5m:.2f} (5 min)",
        "Python": f"{platform.python_implementation()} {platform.python_version()} "
        f"on {platform.system()} {platform.release()}",
        "Libraries": versions,
        "Mode": f"{mode}, {runs} runs per contender, rounds interleaved",
    }


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def render(env: dict[str, str], sections: Sequence[Section]) -> str:
    lines = ["# paas benchmarks", ""]
    lines += [f"- {name}: {value}" for name, value in env.items()]
    lines += [
        "- Reading: each cell is the median over runs, with (min-max). The ratio "
        "column is the median of per-round ratios against the section's reference, "
        "turned so that above 1x is better than the reference.",
        "",
    ]
    lines += _targets_table(sections)
    for number, section in enumerate(sections, 1):
        lines += _section_table(number, section)
    return "\n".join(lines) + "\n"


def _targets_table(sections: Sequence[Section]) -> list[str]:
    targets = [target for section in sections for target in section.targets]
    if not targets:
        return []
    lines = [
        "## Targets",
        "",
        "| Target | Measured | Goal | Met |",
        "|---|--:|--:|:-:|",
    ]
    for target in targets:
        measured = (
            _MISSING if target.measured is None else f"{target.measured:.2f}"
        ) + ("" if target.measured is None else target.unit)
        goal = f"{'≥' if target.at_least else '≤'} {target.limit:g}{target.unit}"
        met = {True: "yes", False: "**no**", None: _MISSING}[target.met]
        lines.append(f"| {target.what} | {measured} | {goal} | {met} |")
    return [*lines, ""]


def _section_table(number: int, section: Section) -> list[str]:
    direction = "higher" if section.metric.higher_is_better else "lower"
    header = [
        "Contender",
        f"{section.metric.label} ({direction} is better)",
        f"vs {section.reference}",
        *section.extras,
        section.ok_label,
    ]
    lines = [
        f"## {number}. {section.title}",
        "",
        section.workload,
        "",
        "| " + " | ".join(header) + " |",
        "|---|--:|--:|" + "--|" * len(section.extras) + "--:|",
    ]
    for contender, runs in section.values.items():
        ok = sum(value is not None for value in runs)
        cells = [
            contender,
            format_stats(section.stats(contender), section.metric),
            format_ratio(section.ratio(contender)),
            *(column.get(contender, _MISSING) for column in section.extras.values()),
            f"{ok}/{len(runs)}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines += [f"- {note}" for note in section.notes]
    return [*lines, ""] if section.notes else lines


def write_markdown(out_dir: Path, text: str) -> Path:
    path = out_dir / "latest.md"
    path.write_text(text)
    return path
