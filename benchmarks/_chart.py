"""The chart: one panel per scenario, median bars with min-max error bars.

paas is drawn in its own colour and the section's reference hatched, so the
comparison the table makes in numbers can be seen at a glance; each bar carries
its ratio to the reference unless the section labels its bars otherwise. A panel
whose bars span more than a factor of 30 gets a log scale, or the small bars
would vanish. Rendering uses the Agg backend: no display needed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks._harness import Stats
from benchmarks._report import ChartSpec, Section

_PAAS_COLOUR = "tab:orange"
_REFERENCE_COLOUR = "tab:gray"
_OTHER_COLOUR = "tab:blue"
_COLUMNS = 2
_LOG_SCALE_SPAN = 30.0
_MIN_SLOTS = 3


def write_chart(out_dir: Path, sections: Sequence[Section], title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = math.ceil(len(sections) / _COLUMNS)
    figure, axes = plt.subplots(
        rows, _COLUMNS, figsize=(7 * _COLUMNS, 4.6 * rows), squeeze=False
    )
    for axis, section in zip(axes.flat, sections, strict=False):
        _draw_section(axis, section.title, section.reference, section.chart_spec())
    for axis in list(axes.flat)[len(sections) :]:
        axis.axis("off")
    figure.suptitle(title, fontsize=11)
    figure.tight_layout()
    path = out_dir / "latest.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _draw_section(axis: Any, title: str, reference: str, spec: ChartSpec) -> None:
    drawn = {
        name: stats
        for name, stats in ((n, Stats.of(v)) for n, v in spec.values.items())
        if stats is not None
    }
    names = list(drawn)
    medians = [stats.median for stats in drawn.values()]
    errors = [
        [stats.median - stats.low for stats in drawn.values()],
        [stats.high - stats.median for stats in drawn.values()],
    ]
    bars = axis.bar(
        range(len(names)),
        medians,
        yerr=errors,
        capsize=4,
        width=0.6,
        color=[_colour_of(name, reference) for name in names],
    )
    for bar, name in zip(bars, names, strict=True):
        bar.set_hatch("//" if name == reference else "")
        axis.annotate(  # above the error bar, so the two never overlap
            spec.labels.get(name, ""),
            (bar.get_x() + bar.get_width() / 2, drawn[name].high),
            xytext=(0, 3),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=7,
        )
    if spec.limit is not None:
        axis.axhline(spec.limit, color="tab:red", linestyle="--", linewidth=1)
    _decorate(axis, title, spec, names, medians)


def _decorate(
    axis: Any, title: str, spec: ChartSpec, names: list[str], medians: list[float]
) -> None:
    direction = "higher" if spec.metric.higher_is_better else "lower"
    axis.set_title(title, fontsize=10)
    axis.set_ylabel(f"{spec.metric.label} ({direction} is better)", fontsize=8)
    axis.set_xticks(range(len(names)))
    axis.set_xticklabels(names, rotation=30, ha="right", fontsize=7)
    axis.set_xlim(-0.75, max(len(names), _MIN_SLOTS) - 0.25)
    axis.tick_params(axis="y", labelsize=7)
    positive = [m for m in medians if m > 0]
    if positive and max(positive) / min(positive) > _LOG_SCALE_SPAN:
        axis.set_yscale("log")
    axis.margins(y=0.15)


def _colour_of(name: str, reference: str) -> str:
    if name.startswith("paas"):
        return _PAAS_COLOUR
    return _REFERENCE_COLOUR if name == reference else _OTHER_COLOUR
