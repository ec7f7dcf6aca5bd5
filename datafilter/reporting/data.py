"""Everything a run report shows, collected from the run folder and the selection's manifest.

Statistics come from DuckDB through :class:`~datafilter.aggregate.ScoreStats` (histograms,
documents at given ranks or near given values), so memory stays bounded on big runs; the texts
of the few sampled documents are read from their input shards, one row group at a time.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from datafilter.aggregate import (
    ALL,
    NULL_GROUP,
    ScoredDoc,
    ScoreFiles,
    ScoreStats,
    fold_statistics,
    has_fold_column,
)
from datafilter.errors import ConfigError, InputError
from datafilter.io.jsonl import JsonlShard, is_jsonl
from datafilter.io.layout import RunLayout
from datafilter.io.record import (
    RunRecord,
    finished_score_shards,
    require_record,
    resolve_scorer_id,
)
from datafilter.reference.calibration import fold_maps
from datafilter.reporting.harmful import collect_harmful
from datafilter.scorers.columns import METRICS

DECILES = [i / 10 for i in range(11)]
# Percentiles drawn on the histograms (from the thresholds tables) besides any extra quantile
# the thresholds stage was asked for.
PERCENTILE_MARKS = (0.1, 0.3, 0.5, 0.6, 0.9)
# Percentiles listed in the report's table of the score distribution.
TABLE_QUANTILES = (0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99)
HIST_BINS = 60
MAX_PANELS = 12  # groups drawn as small multiples (the largest ones)
MAX_SAMPLE_GROUPS = 12  # groups with their own decile samples
MAX_NEAR_GROUPS = 12  # groups whose threshold neighbours are shown
NEAR_K = 3  # documents on each side of a threshold
TEXT_CHARS = 480  # start of each sampled document shown


@dataclass(frozen=True)
class Mark:
    """A value drawn on a histogram: a selection threshold or another mark of the plan.

    ``keeps`` says which side of a threshold a selector keeps (``"above"``/``"below"``), when
    known; ``id_hash`` is the threshold key's tie-breaker (documents are ordered by value, then
    id hash).
    """

    label: str
    value: float
    metric: str
    kind: str = "mark"  # "threshold" or "mark"
    keeps: str | None = None
    id_hash: int | None = None

    def keeps_doc(self, value: float, id_hash: int) -> bool | None:
        """Whether this threshold alone keeps a document; None when the side is unknown."""
        if self.keeps is None:
            return None
        key = (self.value, self.id_hash if self.id_hash is not None else -1)
        if self.keeps == "above":
            return (value, id_hash) >= key
        return (value, id_hash) <= key


@dataclass
class MetricView:
    """One histogram's data: shared bin edges, the global counts and each panel group's."""

    metric: str
    label: str
    log: bool  # edges are over ln(metric); the axis shows the metric on a log scale
    edges: np.ndarray
    total: np.ndarray
    panels: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class SampledDoc:
    doc: ScoredDoc
    label: str  # e.g. "p30", or the side of a threshold
    text: str = ""
    truncated: bool = False
    plan_group: str | None = None  # the document's group in the selection plan
    kept: bool | None = None


@dataclass
class NearBlock:
    """The documents ranked just before and just after one threshold of one group."""

    group: str
    mark: Mark
    docs: list[SampledDoc]


@dataclass
class ReportData:
    run_dir: Path
    record: RunRecord
    scorer_id: str
    selection: Path | None
    manifest: dict[str, Any] | None
    plan_metric: str
    plan_column: str | None  # the selection's group column (thresholds per group)
    panel_column: str | None  # the group column of the per-group plots and samples
    counts: dict[str, int]  # scored documents per panel group (or the one global group)
    views: list[MetricView]
    percentiles: dict[str, dict[str, dict[float, float]]]  # metric -> group -> q -> value
    quantile_table: dict[str, dict[str, dict[float, float]]]  # the same, TABLE_QUANTILES
    marks: dict[str, list[Mark]]  # plan group -> marks; ALL for a global plan
    plan_marks_everywhere: bool  # a global plan: its marks apply to every panel group
    deciles: dict[str, list[SampledDoc]]  # ALL and each sampled panel group
    near: list[NearBlock]
    threshold_tables: list[str]
    notes: list[str]
    harmful: list[Any] = field(default_factory=list)  # harmful_outlier: reporting.harmful
    # Cross-fitted scores: each fold's raw statistics (aggregate.fold_statistics) and the
    # selection's per-fold calibration (reference.calibration), when it has one.
    folds: dict[int, dict[str, Any]] = field(default_factory=dict)
    calibration: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)  # run_metadata()
    keep_table: dict[str, Any] | None = None  # reporting.what_if.keep_table, with its setting
    evaluation: dict[str, Any] | None = None  # RUN/evaluate/table.json, when evaluated

    @property
    def panel_groups(self) -> list[str]:
        """The groups drawn as small multiples: the largest ones, in name order."""
        if self.panel_column is None:
            return []
        largest = sorted(self.counts, key=lambda g: (-self.counts[g], g))[:MAX_PANELS]
        return sorted(largest)

    def marks_for(self, group: str, metric: str) -> list[Mark]:
        """The plan's marks to draw on ``group``'s histogram of ``metric``."""
        if self.plan_marks_everywhere:
            found = self.marks.get(ALL, [])
        elif group == ALL:
            found = self.marks.get(ALL, []) if self.plan_column is None else []
        elif self.plan_column == self.panel_column:
            found = self.marks.get(group, [])
        else:
            found = []
        return [m for m in found if m.metric == metric]


# ----------------------------------------------------------------------------- the plan


def plan_marks(plan: dict[str, Any] | None) -> dict[str, list[Mark]]:
    """Per plan group, the values to draw, read from the selector's plan.

    Generic: a ``marks`` list (plan-wide or per group) of ``{"label", "value"}`` with optional
    ``metric`` (default: the plan's), ``kind`` (``"threshold"``) and ``keeps``
    (``"above"``/``"below"``). Also read: ``lower``/``upper`` ``{value, id_hash}`` bounds
    (perplexity_band), ``head_below``/``middle_below`` cuts (ccnet_buckets) and ``quartiles``
    (perplexity_sampling).
    """
    if not plan:
        return {}
    metric = str(plan.get("metric", "ppl"))
    shared = [_mark(m, metric) for m in plan.get("marks", []) if _is_mark(m)]
    out: dict[str, list[Mark]] = {}
    for group, params in (plan.get("groups") or {}).items():
        marks = list(shared)
        if not isinstance(params, dict):
            out[group] = marks
            continue
        for key, label, keeps in (
            ("lower", "lower bound", "above"),
            ("upper", "upper bound", "below"),
        ):
            bound = params.get(key)
            if isinstance(bound, dict) and _finite(bound.get("value")):
                marks.append(
                    Mark(
                        label,
                        float(bound["value"]),
                        metric,
                        "threshold",
                        keeps,
                        _int(bound.get("id_hash")),
                    )
                )
        for key, label in (("head_below", "head | middle"), ("middle_below", "middle | tail")):
            if _finite(params.get(key)):
                marks.append(Mark(label, float(params[key]), metric, "threshold"))
        quartiles = params.get("quartiles")
        if isinstance(quartiles, list) and len(quartiles) == 3:
            for label, value in zip(("q1", "median", "q3"), quartiles, strict=True):
                if _finite(value):
                    marks.append(Mark(label, float(value), "ppl"))
        marks += [_mark(m, metric) for m in params.get("marks", []) if _is_mark(m)]
        out[group] = marks
    if shared and ALL not in out:
        out[ALL] = shared
    return out


def _is_mark(m: Any) -> bool:
    return isinstance(m, dict) and _finite(m.get("value"))


def _mark(m: dict[str, Any], metric: str) -> Mark:
    label = str(m.get("label", "mark"))
    kind = m.get("kind") or ("threshold" if label in {"cut", "threshold"} else "mark")
    keeps = m.get("keeps") if m.get("keeps") in ("above", "below") else None
    return Mark(
        label, float(m["value"]), str(m.get("metric", metric)), kind, keeps, _int(m.get("id_hash"))
    )


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _int(v: Any) -> int | None:
    return int(v) if isinstance(v, int) and not isinstance(v, bool) else None


# ----------------------------------------------------------------------------- collecting


def find_selection(layout: RunLayout, selection: str | Path | None, scorer_id: str | None):
    """The selection's output folder and manifest: the one asked for, else the most recent
    one recorded by the run (for ``scorer_id`` when given); (None, None) when there is none."""
    if selection is not None:
        out = Path(selection).expanduser().resolve()
        manifest = _read_manifest(out)
        if manifest is None:
            raise ConfigError(f"{out} holds no manifest.json: not the output of datafilter select")
        made_from = manifest.get("run")
        if made_from and Path(made_from).resolve() != layout.root:
            raise ConfigError(f"selection {out} was made from run {made_from}, not {layout.root}")
        return out, manifest
    for out in layout.selection_outputs():
        manifest = _read_manifest(out)
        if manifest is None:
            continue
        if scorer_id is None or manifest.get("scorer_id") == scorer_id:
            return out, manifest
    return None, None


def _read_manifest(out: Path) -> dict[str, Any] | None:
    path = out / "manifest.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"unreadable manifest ({exc})", path=str(path)) from None


def collect(
    run_dir: str | Path,
    *,
    selection: str | Path | None = None,
    scorer_id: str | None = None,
    text_chars: int = TEXT_CHARS,
) -> ReportData:
    """Gather what the report shows; the DuckDB queries scan the score shards a few times."""
    layout = RunLayout.at(run_dir)
    record = require_record(layout)
    out, manifest = find_selection(layout, selection, scorer_id)
    if manifest is not None:
        sid = str(manifest.get("scorer_id") or resolve_scorer_id(record, scorer_id))
        if scorer_id is not None and sid != scorer_id:
            raise ConfigError(f"selection {out} used scorer {sid!r}, not {scorer_id!r}")
        if sid not in record.scorers:
            raise ConfigError(f"selection {out} used scorer {sid!r}, which the run no longer has")
    else:
        sid = resolve_scorer_id(record, scorer_id)
    notes: list[str] = []
    plan = (manifest or {}).get("thresholds") or {}
    plan_column = (manifest or {}).get("group_by")
    tables = _threshold_tables(layout, sid)
    panel_column = plan_column or (manifest or {}).get("report_by")
    if panel_column is None:
        panel_column = next((c for c in tables if c is not None), None)

    pairs = finished_score_shards(layout, record, sid)
    extra_ids = [x for x in (manifest or {}).get("extra_scorers", {}) if x in record.scorers]
    extra = {x: {s.rel: p for s, p in finished_score_shards(layout, record, x)} for x in extra_ids}
    files = ScoreFiles(
        score_files=[str(p) for _, p in pairs],
        input_files=[str(s.path) for s, _ in pairs],
        extra={x: [str(paths[s.rel]) for s, _ in pairs] for x, paths in extra.items()},
    )
    # A selection of cross-fitted scores was made on calibrated scores: so are the plots.
    calibration = (manifest or {}).get("calibration")
    files = dataclasses.replace(files, calibration=fold_maps(calibration))
    crossfit = bool(pairs) and has_fold_column(files.score_files[0])
    folds = fold_statistics(files.score_files) if crossfit else {}
    options = ((manifest or {}).get("selector") or {}).get("options") or {}
    plan_metric = str(plan.get("metric") or options.get("metric") or "ppl")
    overall = ScoreStats(files, None)
    panel_stats = ScoreStats(files, panel_column) if panel_column else None
    if plan_column is None:
        plan_stats = overall
    elif plan_column == panel_column and panel_stats is not None:
        plan_stats = panel_stats
    else:
        plan_stats = ScoreStats(files, plan_column)
    counts = (panel_stats or overall).counts()

    metrics = [("ppl", "perplexity", True), ("bpb", "bits per byte", False)]
    if plan_metric not in METRICS:
        metrics.append((plan_metric, plan_metric, plan_metric.endswith(":ppl")))
    views = []
    for metric, label, log in metrics:
        edges, total = overall.shared_histogram(metric, HIST_BINS, log=log)
        view = MetricView(metric, label, log, edges, total.get(ALL, np.zeros(HIST_BINS, np.int64)))
        if panel_stats is not None:
            _, view.panels = panel_stats.shared_histogram(
                metric, HIST_BINS, log=log, lo=float(edges[0]), hi=float(edges[-1])
            )
        views.append(view)

    marks = plan_marks(plan)
    everywhere = bool(manifest) and plan_column is None
    percentiles = _percentiles(tables, panel_column, PERCENTILE_MARKS, extra=True)
    quantile_table = _percentiles(tables, panel_column, TABLE_QUANTILES)
    if not tables:
        notes.append("no thresholds table: run datafilter thresholds to draw percentiles")
    if panel_column and len(counts) > MAX_PANELS:
        notes.append(
            f"{len(counts)} groups in {panel_column!r}: the plots show the {MAX_PANELS} largest"
        )

    deciles: dict[str, list[SampledDoc]] = {}
    for g, docs in overall.documents_at_quantiles(DECILES, plan_metric).items():
        deciles[g] = [SampledDoc(d, _pct_label(q)) for q, d in zip(DECILES, docs, strict=True)]
    if panel_stats is not None:
        sample_groups = set(sorted(counts, key=lambda g: (-counts[g], g))[:MAX_SAMPLE_GROUPS])
        by_group = panel_stats.documents_at_quantiles(DECILES, plan_metric)
        for g in sorted(sample_groups & set(by_group)):
            deciles[g] = [
                SampledDoc(d, _pct_label(q)) for q, d in zip(DECILES, by_group[g], strict=True)
            ]

    near = _near_blocks(plan_stats, marks, plan_metric)
    harmful = collect_harmful(manifest, plan_stats)
    _fill_texts(
        record,
        [d for ds in deciles.values() for d in ds] + [d for b in near for d in b.docs],
        plan_column,
        text_chars,
    )
    for docs in deciles.values():
        for d in docs:
            d.kept = _kept(d, marks, plan_column)
    for block in near:
        for d in block.docs:
            d.kept = _kept(d, marks, plan_column)
    return ReportData(
        run_dir=layout.root,
        record=record,
        scorer_id=sid,
        selection=out,
        manifest=manifest,
        plan_metric=plan_metric,
        plan_column=plan_column,
        panel_column=panel_column,
        counts=counts,
        views=views,
        percentiles=percentiles,
        quantile_table=quantile_table,
        marks=marks,
        plan_marks_everywhere=everywhere,
        deciles=deciles,
        near=near,
        threshold_tables=[str(layout.thresholds_path(sid, c)) for c in tables],
        notes=notes,
        harmful=harmful,
        folds=folds,
        calibration=calibration,
        metadata=run_metadata(layout, record, sid, out),
        keep_table=_keep_table(tables, panel_column, plan_metric, options),
        evaluation=_evaluation(layout),
    )


def run_metadata(layout: RunLayout, record, sid: str, selection: Path | None) -> dict[str, Any]:
    """When the scores and the selection were made, how long each took, by which datafilter
    and command, and the model's identity (from the run folder: no clock is read here, so the
    same run gives the same page)."""
    from datafilter.io.layout import STATE_DIR
    from datafilter.io.markers import read_marker

    score = read_marker(layout.root / STATE_DIR / "score" / sid / "summary.json") or {}
    chosen = read_marker(layout.selection_record_path(selection)) if selection else None
    scorer = record.scorers.get(sid, {}).get("scorer", {})
    recipe = scorer.get("model_recipe") or {}
    options = scorer.get("options") or {}
    model = {
        "scorer": f"{scorer.get('scorer', '?')} (version {scorer.get('version', '?')})",
        "model": options.get("model"),
        "checksums": recipe.get("checksums") or scorer.get("model_files"),
    }
    return {
        "score": score.get("timing"),
        "selection": (chosen or {}).get("timing"),
        "model": {k: v for k, v in model.items() if v},
    }


def _keep_table(
    tables: dict[str | None, list[dict[str, Any]]],
    panel_column: str | None,
    metric: str,
    options: dict[str, Any],
) -> dict[str, Any] | None:
    """The what-if table (reporting.what_if) for the plan's metric and criterion."""
    from datafilter.reporting.what_if import CRITERIA, keep_table

    def rows_of(column: str | None) -> dict[str, dict[float, float]]:
        out: dict[str, dict[float, float]] = defaultdict(dict)
        for r in tables.get(column) or []:
            if r["metric"] == metric and r["value"] is not None and math.isfinite(r["value"]):
                out[ALL if column is None else r["group"]][float(r["quantile"])] = r["value"]
        return out

    criterion = options.get("criterion") if options.get("criterion") in CRITERIA else "medium"
    overall = rows_of(None).get(ALL, {})
    groups = rows_of(panel_column) if panel_column else {}
    found = keep_table(overall, {ALL: overall, **groups}, criterion)
    if found is None:
        return None
    return {**found, "criterion": criterion, "metric": metric, "column": panel_column}



def _evaluation(layout: RunLayout) -> dict[str, Any] | None:
    """The table of ``datafilter evaluate`` in this run folder, if any."""
    path = layout.root / "evaluate" / "table.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path} cannot be read ({exc}); run datafilter evaluate again") from None


def _pct_label(q: float) -> str:
    return f"p{round(q * 100, 4):g}"


def _threshold_tables(layout: RunLayout, sid: str) -> dict[str | None, list[dict[str, Any]]]:
    """The thresholds tables of scorer ``sid``: group column (None: global) -> rows."""
    found: dict[str | None, list[dict[str, Any]]] = {}
    folder = layout.root / "thresholds"
    if not folder.is_dir():
        return found
    for path in sorted(folder.glob("*.parquet")):
        if path.name.startswith("."):
            continue
        name = path.name[: -len(".parquet")]
        if name == sid:
            column = None
        elif name.startswith(f"{sid}.by-"):
            column = name[len(f"{sid}.by-") :]
        else:
            continue
        found[column] = pq.read_table(
            path, columns=["group", "metric", "quantile", "value"]
        ).to_pylist()
    return found


def _percentiles(
    tables: dict[str | None, list[dict[str, Any]]],
    panel_column: str | None,
    quantiles: tuple[float, ...],
    extra: bool = False,
) -> dict[str, dict[str, dict[float, float]]]:
    """metric -> group -> {quantile: value} from the thresholds tables, global (ALL) and per
    panel group: the ``quantiles`` and, with ``extra``, any quantile that is not a whole
    percent (asked for with ``datafilter thresholds --quantile``)."""
    out: dict[str, dict[str, dict[float, float]]] = defaultdict(dict)
    for column, rows in tables.items():
        if column not in (None, panel_column):
            continue
        for r in rows:
            q = float(r["quantile"])
            percent = round(q * 100, 6)
            wanted = round(q, 6) in quantiles or (extra and percent != int(percent))
            if not wanted or r["value"] is None or not math.isfinite(r["value"]):
                continue
            group = ALL if column is None else r["group"]
            out[r["metric"]].setdefault(group, {})[q] = float(r["value"])
    return dict(out)


def _near_blocks(stats: ScoreStats, marks: dict[str, list[Mark]], metric: str) -> list[NearBlock]:
    """The documents on both sides of each threshold (of the plan's metric) of each group."""
    wanted: dict[str, list[Mark]] = {}
    for group in sorted(marks)[:MAX_NEAR_GROUPS]:
        found = [m for m in marks[group] if m.kind == "threshold" and m.metric == metric]
        if found:
            wanted[group] = found
    near = stats.documents_near(
        {g: [(m.value, m.id_hash) for m in ms] for g, ms in wanted.items()}, metric, NEAR_K
    )
    blocks = []
    for group, ms in wanted.items():
        for i, mark in enumerate(ms):
            docs = near.get((group, i), [])
            blocks.append(NearBlock(group, mark, [SampledDoc(d, _side(d, mark)) for d in docs]))
    return blocks


def _side(doc: ScoredDoc, mark: Mark) -> str:
    key = (mark.value, mark.id_hash if mark.id_hash is not None else -1)
    return "below" if (doc.value, doc.id_hash) < key else "at or above"


def _kept(doc: SampledDoc, marks: dict[str, list[Mark]], plan_column: str | None) -> bool | None:
    """Whether the selection keeps the document, where its thresholds say so."""
    group = ALL if plan_column is None else doc.plan_group
    found = [m for m in marks.get(group or "", []) if m.kind == "threshold" and m.keeps]
    if not found:
        return None
    return all(m.keeps_doc(_value(doc.doc, m.metric), doc.doc.id_hash) for m in found)


def _value(doc: ScoredDoc, metric: str) -> float:
    return doc.bpb if metric == "bpb" else doc.ppl if metric == "ppl" else doc.value


def _fill_texts(
    record: RunRecord, docs: list[SampledDoc], plan_column: str | None, chars: int
) -> None:
    """Read the start of each document's text (and its plan group) from its input shard,
    one row group at a time, only the row groups that hold a wanted row."""
    by_file: dict[str, list[SampledDoc]] = defaultdict(list)
    for d in docs:
        by_file[d.doc.input_file].append(d)
    columns = [record.text_column] + ([plan_column] if plan_column else [])
    for path, wanted in by_file.items():
        if is_jsonl(path):  # read whole: a JSONL shard has no row groups
            _fill_from(JsonlShard(Path(path)).read(columns), wanted, 0, plan_column, chars)
            continue
        pf = pq.ParquetFile(path)
        starts = np.cumsum(
            [0] + [pf.metadata.row_group(i).num_rows for i in range(pf.num_row_groups)]
        )
        by_group: dict[int, list[SampledDoc]] = defaultdict(list)
        for d in wanted:
            rg = int(np.searchsorted(starts, d.doc.row, side="right") - 1)
            by_group[rg].append(d)
        for rg, ds in sorted(by_group.items()):
            table = pf.read_row_group(rg, columns=columns)
            _fill_from(table, ds, int(starts[rg]), plan_column, chars)


def _fill_from(
    table: pa.Table, docs: list[SampledDoc], first_row: int, plan_column: str | None, chars: int
) -> None:
    """Text start (and plan group) of each doc from ``table``, whose first row is ``first_row``."""
    for d in docs:
        i = d.doc.row - first_row
        d.text, d.truncated = _start_of(table.column(0)[i].as_py(), chars)
        if plan_column:
            value = table.column(1)[i].as_py()
            d.plan_group = NULL_GROUP if value is None else str(value)


def _start_of(value: Any, chars: int) -> tuple[str, bool]:
    if value is None:
        return "", False
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    text = str(value)
    return text[:chars], len(text) > chars
