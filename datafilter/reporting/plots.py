"""The report's figures, drawn with matplotlib's Agg canvas and embedded as base64 PNG."""

from __future__ import annotations

import base64
import io
import math
from typing import Any

import numpy as np

from datafilter.errors import MissingDependencyError
from datafilter.reporting.data import ALL, Mark, MetricView, ReportData

WIDTH = 10.5  # inches; at DPI this is about twice the page's column width in CSS pixels
DPI = 144
BAR_COLOR = "#4c72b0"
AFTER_COLOR = "#55a868"
BEFORE_COLOR = "#b8c2cc"
THRESHOLD_COLOR = "#c44e52"
KEPT_BAND_COLOR = "#55a868"
MARK_COLORS = ("#8172b3", "#dd8452", "#937860", "#da8bc3", "#64b5cd", "#8c8c8c")
PERCENTILE_COLOR = "#6b7280"


def require_matplotlib():
    try:
        import matplotlib
    except ImportError:
        raise MissingDependencyError(
            "the report's plots need matplotlib: pip install 'datafilter[report]'"
        ) from None
    matplotlib.rcParams.update(
        {
            "font.size": 9,
            "axes.titlesize": 9.5,
            "axes.labelsize": 9,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "grid.color": "#e5e7eb",
            "grid.linewidth": 0.6,
            "legend.fontsize": 8,
            "legend.frameon": False,
            "svg.hashsalt": "datafilter",
        }
    )
    return matplotlib


def _figure(width: float, height: float):
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def png_data_uri(fig) -> str:
    """The figure as a ``data:image/png;base64,...`` URI (no metadata, so reproducible)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None}, facecolor="white")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def plain(text: Any, limit: int = 32) -> str:
    """A label matplotlib shows literally (``$`` would start mathtext), cut to ``limit``."""
    s = str(text)
    if len(s) > limit:
        s = s[: limit - 1] + "…"
    return s.replace("$", r"\$")


def group_label(group: str) -> str:
    return {ALL: "all documents", "__null__": "(null)"}.get(group, group)


def _pos(view: MetricView, value: float) -> float | None:
    """Where a metric value sits on the x axis (ln of it for log views); None if it cannot."""
    if view.log:
        return math.log(value) if value > 0 else None
    return value


def _format_log_axis(ax, view: MetricView, max_ticks: int) -> None:
    """Ticks at 1-2-5 (or, if too many, 1-10-100) multiples, labelled in metric units.

    The axis itself is linear in ln(metric): fixed ticks draw far faster than a log scale."""
    from matplotlib import ticker

    lo, hi = math.exp(view.edges[0]), math.exp(view.edges[-1])
    decades = range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1)
    ticks = []
    for steps in ((1, 2, 5), (1,), (1,)):
        ticks = [m * 10.0**k for k in decades for m in steps if lo <= m * 10.0**k <= hi]
        if len(ticks) <= max_ticks:
            break
        decades = decades if steps != (1,) else range(decades.start, decades.stop, 2)
    ax.set_xticks([math.log(t) for t in ticks], [f"{t:g}" for t in ticks])
    ax.xaxis.set_minor_locator(ticker.NullLocator())


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def draw_histogram(
    ax,
    view: MetricView,
    counts: np.ndarray,
    marks: list[Mark],
    percentiles: dict[float, float],
    *,
    compact: bool = False,
    max_ticks: int | None = None,
    reference: np.ndarray | None = None,
    values_in_legend: bool = True,
) -> None:
    """One histogram with the kept band, the plan's marks and the percentiles drawn on it."""
    x = view.edges
    if view.log:
        _format_log_axis(ax, view, max_ticks or (6 if compact else 12))
    span = float(x[-1] - x[0]) or 1.0
    bounds = [m for m in marks if m.kind == "threshold" and m.keeps and _pos(view, m.value)]
    if bounds:
        lo = max((_pos(view, m.value) for m in bounds if m.keeps == "above"), default=x[0])
        hi = min((_pos(view, m.value) for m in bounds if m.keeps == "below"), default=x[-1])
        if hi > lo:
            ax.axvspan(lo, hi, color=KEPT_BAND_COLOR, alpha=0.12, lw=0, label="kept band")
    ax.stairs(counts, x, fill=True, color=BAR_COLOR, alpha=0.85, label="documents")
    if reference is not None and reference.sum() > 0 and counts.sum() > 0:
        scaled = reference * (counts.sum() / reference.sum())
        ax.stairs(scaled, x, color="#374151", lw=0.8, alpha=0.6, label="all documents (scaled)")
    level_at: list[tuple[float, int]] = []  # label positions, to stagger close ones
    for q, v in sorted(percentiles.items(), key=lambda item: item[1]):
        xv = _pos(view, v)
        if xv is None:
            continue
        ax.axvline(xv, color=PERCENTILE_COLOR, ls=":", lw=0.9)
        if compact:
            continue
        taken = {lvl for xp, lvl in level_at if abs(xv - xp) / span < 0.055}
        level = min(set(range(len(taken) + 1)) - taken)
        level_at.append((xv, level))
        ax.text(
            xv,
            0.99 - 0.085 * level,
            f"p{round(q * 100, 2):g}",
            transform=ax.get_xaxis_transform(),
            ha="center",
            va="top",
            fontsize=7,
            color=PERCENTILE_COLOR,
            bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.6, "alpha": 0.85},
        )
    others = 0
    for m in marks:
        xv = _pos(view, m.value)
        if xv is None:
            continue
        label = f"{m.label} {_fmt(m.value)}" if values_in_legend else m.label
        if m.kind == "threshold":
            ax.axvline(xv, color=THRESHOLD_COLOR, lw=1.6, label=plain(label, 40))
        else:
            color = MARK_COLORS[others % len(MARK_COLORS)]
            others += 1
            ax.axvline(xv, color=color, lw=1.4, ls="--", label=plain(label, 40))
    ax.set_ylabel("documents")
    ax.set_ylim(bottom=0)
    ax.set_xlabel(f"{plain(view.label, 40)}" + (" (log scale)" if view.log else ""))


def global_histograms(data: ReportData) -> str:
    """All documents: one panel per metric, side by side."""
    views = data.views
    fig = _figure(WIDTH, 3.5)
    axes = fig.subplots(1, len(views), squeeze=False)[0]
    for ax, view in zip(axes, views, strict=True):
        draw_histogram(
            ax,
            view,
            view.total,
            data.marks_for(ALL, view.metric),
            data.percentiles.get(view.metric, {}).get(ALL, {}),
            max_ticks=12 if len(views) < 3 else 7,
        )
        ax.set_title(f"{plain(view.label, 40)}: all {int(view.total.sum()):,} scored documents")
    _figure_legend(fig, axes)
    return png_data_uri(fig)


def _figure_legend(fig, axes) -> None:
    """One legend above the panels with every distinct label."""
    handles: dict[str, Any] = {}
    for ax in np.ravel(axes):
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, h)
    if len(handles) > 1:
        fig.legend(
            list(handles.values()),
            list(handles),
            loc="outside upper center",
            ncols=min(6, len(handles)),
        )


def group_histograms(data: ReportData, view: MetricView) -> str | None:
    """Small multiples: one panel per group on the global bins, the global shape behind."""
    groups = [g for g in data.panel_groups if g in view.panels]
    if not groups:
        return None
    ncols = 3 if len(groups) > 4 else 2 if len(groups) > 1 else 1
    nrows = math.ceil(len(groups) / ncols)
    fig = _figure(WIDTH, 0.6 + 2.2 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True)
    tally = _tally_groups(data)
    for ax, group in zip(axes.flat, groups, strict=False):
        draw_histogram(
            ax,
            view,
            view.panels[group],
            data.marks_for(group, view.metric),
            data.percentiles.get(view.metric, {}).get(group, {}),
            compact=True,
            reference=view.total,
            values_in_legend=False,
        )
        title = f"{plain(group_label(group), 28)}  n={data.counts.get(group, 0):,}"
        if group in tally and tally[group].get("read"):
            title += f", kept {tally[group]['kept'] / tally[group]['read']:.0%}"
        ax.set_title(title)
        ax.set_ylabel("")
    for i, ax in enumerate(axes.flat):
        if i >= len(groups):
            ax.set_visible(False)
        elif i + ncols < len(groups):  # another panel below: no x labels
            ax.set_xlabel("")
        else:
            ax.tick_params(labelbottom=True)
    _figure_legend(fig, axes)
    return png_data_uri(fig)


def _tally_groups(data: ReportData) -> dict[str, dict[str, Any]]:
    """The manifest's per-group counts when they are by the panel column."""
    if not data.manifest:
        return {}
    tally_by = data.manifest.get("report_by") or data.manifest.get("group_by")
    if tally_by != data.panel_column:
        return {}
    return data.manifest.get("groups") or {}


def group_bars(rows: list[dict[str, Any]], overall_kept: float | None) -> str | None:
    """Per group: share of the corpus's tokens before and after, and the fraction kept."""
    if not rows:
        return None
    rows = rows[:30]
    n = len(rows)
    fig = _figure(WIDTH, 1.0 + 0.3 * n)
    left, right = fig.subplots(1, 2, sharey=True, width_ratios=(1.3, 1))
    y = np.arange(n)
    names = [plain(group_label(r["group"]), 24) for r in rows]
    before = [r.get("share_tokens_before", 0.0) * 100 for r in rows]
    after = [r.get("share_tokens_after", 0.0) * 100 for r in rows]
    h = 0.38
    left.barh(y - h / 2, before, h, color=BEFORE_COLOR, label="before selection")
    left.barh(y + h / 2, after, h, color=AFTER_COLOR, label="after selection")
    left.set_yticks(y, names)
    left.invert_yaxis()
    left.set_xlabel("share of the corpus's tokens (%)")
    left.legend(loc="lower right")
    left.grid(axis="y", visible=False)
    kept = [100 * r["kept"] / r["read"] if r.get("read") else 0.0 for r in rows]
    right.barh(y, kept, 0.6, color=BAR_COLOR)
    for yi, k in zip(y, kept, strict=True):
        right.text(k + 1, yi, f"{k:.0f}%", va="center", fontsize=7.5, color="#374151")
    if overall_kept is not None:
        right.axvline(100 * overall_kept, color=THRESHOLD_COLOR, lw=1.2, ls="--", label="overall")
        right.legend(loc="lower right")
    right.set_xlim(0, 110)
    right.set_xlabel("documents kept (%)")
    right.grid(axis="y", visible=False)
    return png_data_uri(fig)


HARMFUL_COLOR = "#c44e52"
CLEAN_COLOR = "#4c72b0"


def harmful_histogram(panel) -> str:
    """One group of a harmful_outlier selection: the histogram of its statistic, the fitted
    components and their sum, the cut, the labelled documents (a strip under the axis: harmful
    red, clean green) and the documents nearest the cut (black ticks)."""
    fig = _figure(WIDTH, 3.2)
    ax = fig.subplots()
    edges, counts = panel.edges, panel.counts
    if panel.log_ppl:
        _format_log_axis(ax, MetricView("ppl", "perplexity", True, edges, counts), 12)
    ax.stairs(counts, edges, fill=True, color=BAR_COLOR, alpha=0.55, label="documents")
    x = np.linspace(edges[0], edges[-1], 400)
    fitted = panel.fitted_counts(x)
    accepted = (panel.entry.get("fit") or {}).get("found")
    for c, y in fitted:
        if accepted:
            name = "harmful component" if c["harmful"] else "clean component"
        else:
            name = ("low" if c["harmful"] == panel.log_ppl else "high") + " component (refused)"
        color = HARMFUL_COLOR if c["harmful"] else "#374151"
        ax.plot(x, y, color=color, lw=1.2, ls="--", label=f"{name} ({c['weight']:.1%})")
    if len(fitted) > 1:
        ax.plot(x, sum(y for _, y in fitted), color="#111827", lw=1.0, label="fitted mixture")
    top = max(float(counts.max()) if len(counts) else 1.0, 1.0)
    if panel.cut is not None:
        what = f"ppl < {math.exp(panel.cut):.4g}" if panel.log_ppl else f"> {panel.cut:.3g}"
        ax.axvline(panel.cut, color=THRESHOLD_COLOR, lw=1.6, label=f"cut: flag {what}")
    labels = panel.entry.get("labels") or {}
    values = np.asarray(labels.get("values") or [], dtype=float)
    harmful = np.asarray(labels.get("harmful") or [], dtype=bool)
    bottom = 0.0
    if len(values):
        bottom = -0.12 * top
        ax.vlines(values[harmful], -0.11 * top, -0.065 * top, color=HARMFUL_COLOR, lw=0.8,
                  label=f"labelled harmful ({int(harmful.sum())})")  # fmt: skip
        ax.vlines(values[~harmful], -0.055 * top, -0.01 * top, color=AFTER_COLOR, lw=0.8,
                  label=f"labelled clean ({int((~harmful).sum())})")  # fmt: skip
    near = [d["value"] for d in panel.entry.get("nearest") or []]
    if panel.log_ppl:
        near = [math.log(v) for v in near if v > 0]
    if near:
        xs = np.asarray(near)
        ax.plot(xs, np.full(len(xs), 0.02 * top), "v", color="#111827", ms=4,
                label="nearest the cut")  # fmt: skip
    ax.set_ylim(bottom=bottom)
    ax.set_ylabel("documents")
    ax.set_xlabel(
        "harmful-model perplexity (log scale)" if panel.log_ppl else "ln(ppl_clean / ppl_harmful)"
    )
    ax.set_title(f"{plain(group_label(panel.group), 40)}: {panel.entry.get('mode', '?')} mode")
    ax.legend(loc="upper right", ncols=2)
    return png_data_uri(fig)
