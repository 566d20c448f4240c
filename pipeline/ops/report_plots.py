"""The run report's plots, drawn with matplotlib as inline SVG strings.

Called by `pipeline.ops.report`. Figures are built with matplotlib's
object-oriented API (no pyplot state, no display needed). Text stays text
(`svg.fonttype: none`), which keeps each plot a few KiB and lets the browser
test read the labels. Elements the test counts carry ids (`set_gid`): one
`<g id="slice-bar-N">` per slice, `cm-cell-I-J` per confusion-matrix cell,
`history-point-N` per run.
"""

import io
import math
from typing import Dict, List, Optional, Sequence

from pipeline.ops.report_data import FeatureStatistics, HistoryPoint

TRAIN_COLOR = "#4c72b0"
EVAL_COLOR = "#dd8452"
PUSH_COLOR = "#2ca02c"
ROLLBACK_COLOR = "#d62728"


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=72)


def to_svg(figure) -> str:
    """The figure as an <svg> element, without the XML prologue."""
    import matplotlib

    buffer = io.StringIO()
    # Text stays text; fixed ids and no date, so the same run gives the same page.
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "tfxt-report"}):
        figure.savefig(buffer, format="svg", metadata={"Date": None}, bbox_inches="tight")
    text = buffer.getvalue()
    return text[text.index("<svg"):]


def feature_distribution(train: Optional[FeatureStatistics], eval_: Optional[FeatureStatistics]) -> str:
    """Train and eval distributions of one feature, as fractions of the split's examples."""
    figure = _figure(3.6, 2.2)
    axes = figure.add_subplot()
    reference = train or eval_
    if reference.kind == "numeric":
        for stats, color, label in ((train, TRAIN_COLOR, "train"), (eval_, EVAL_COLOR, "eval")):
            if stats and stats.histogram:
                total = sum(b[2] for b in stats.histogram) or 1
                lows = [b[0] for b in stats.histogram] + [stats.histogram[-1][1]]
                heights = [b[2] / total for b in stats.histogram]
                axes.stairs(heights, lows, color=color, label=label, linewidth=1.5)
    else:
        values = [v for v, _ in reference.histogram][:10]
        width = 0.4
        for offset, (stats, color, label) in enumerate(((train, TRAIN_COLOR, "train"),
                                                        (eval_, EVAL_COLOR, "eval"))):
            if stats:
                counts = dict(stats.histogram)
                total = sum(counts.values()) or 1
                axes.bar([i + (offset - 0.5) * width for i in range(len(values))],
                         [counts.get(v, 0) / total for v in values], width, color=color, label=label)
        axes.set_xticks(range(len(values)), values, fontsize=8)
    axes.set_title(reference.name, fontsize=9)
    axes.set_ylabel("fraction", fontsize=8)
    axes.tick_params(labelsize=8)
    axes.legend(fontsize=7, frameon=False)
    return to_svg(figure)


def slice_accuracy(metrics: Dict[str, Dict[str, float]], metric: str,
                   threshold: Optional[float]) -> str:
    """A horizontal bar per slice; the threshold as a dashed line."""
    names = [name for name in metrics if metric in metrics[name]]
    figure = _figure(5.5, 0.35 * len(names) + 0.9)
    axes = figure.add_subplot()
    for index, name in enumerate(names):
        bars = axes.barh(index, metrics[name][metric], color=TRAIN_COLOR if name == "Overall" else EVAL_COLOR)
        bars.patches[0].set_gid(f"slice-bar-{index}")
    axes.set_yticks(range(len(names)), names, fontsize=8)
    axes.invert_yaxis()
    axes.set_xlim(0, 1.0)
    if threshold is not None:
        axes.axvline(threshold, color="black", linestyle="--", linewidth=1)
    axes.set_xlabel(metric, fontsize=8)
    axes.tick_params(labelsize=8)
    return to_svg(figure)


def confusion_matrix(matrix: List[List[float]], class_names: Sequence[str]) -> str:
    """TFMA's confusion matrix: rows are the actual class, columns the predicted one."""
    from matplotlib.patches import Rectangle

    size = len(matrix)
    names = [class_names[i] if i < len(class_names) else f"class {i}" for i in range(size)]
    figure = _figure(1.1 * size + 1.6, 1.0 * size + 1.2)
    axes = figure.add_subplot()
    largest = max((max(row) for row in matrix), default=0) or 1
    for actual, row in enumerate(matrix):
        for predicted, count in enumerate(row):
            shade = count / largest
            cell = Rectangle((predicted, actual), 1, 1, facecolor=(1 - 0.7 * shade, 1 - 0.45 * shade, 1),
                             edgecolor="white")
            cell.set_gid(f"cm-cell-{actual}-{predicted}")
            axes.add_patch(cell)
            axes.text(predicted + 0.5, actual + 0.5, f"{count:.0f}", ha="center", va="center", fontsize=10)
    axes.set_xlim(0, size)
    axes.set_ylim(size, 0)
    axes.set_xticks([i + 0.5 for i in range(size)], names, fontsize=8)
    axes.set_yticks([i + 0.5 for i in range(size)], names, fontsize=8)
    axes.set_xlabel("predicted", fontsize=8)
    axes.set_ylabel("actual", fontsize=8)
    return to_svg(figure)


def history(points: Sequence[HistoryPoint], metric_label: str, rolled_back: Sequence[str],
            stable_version: Optional[int]) -> str:
    """The metric of every run, pushes marked green, rolled-back versions red, stable circled."""
    figure = _figure(7.0, 2.6)
    axes = figure.add_subplot()
    xs = list(range(len(points)))
    ys = [p.accuracy if p.accuracy is not None else math.nan for p in points]
    axes.plot(xs, ys, color=TRAIN_COLOR, linewidth=1.2)
    for x, point in zip(xs, points, strict=True):
        y = ys[x]
        if math.isnan(y):
            continue
        color = ROLLBACK_COLOR if point.pushed_version in rolled_back and point.new_push else (
            PUSH_COLOR if point.new_push else TRAIN_COLOR)
        marker = "^" if point.new_push else "o"
        (line,) = axes.plot([x], [y], marker=marker, color=color, markersize=8 if point.new_push else 5)
        line.set_gid(f"history-point-{x}")
        if stable_version is not None and point.new_push and point.pushed_version == str(stable_version):
            axes.plot([x], [y], marker="o", markersize=14, markerfacecolor="none", color="black")
    axes.set_xticks(xs, [_span_label(p.spans) + "\n" + p.started[5:16] for p in points], fontsize=7)
    axes.set_ylabel(metric_label, fontsize=8)
    axes.tick_params(labelsize=8)
    finite = [y for y in ys if not math.isnan(y)]
    if finite:
        axes.set_ylim(max(0.0, min(finite) - 0.05), min(1.0, max(finite) + 0.02) + 0.01)
    return to_svg(figure)


def _span_label(spans: Sequence[int]) -> str:
    if not spans:
        return "all spans"
    return f"{spans[0]}-{spans[-1]}" if len(spans) > 1 else str(spans[0])
