"""Harmful-content outliers (Jansen et al. 2022, "Perplexed by Quality").

The selected scores come from a KenLM trained only on harmful text: a LOW perplexity means the
document resembles harmful text, so documents below the cut are flagged (and dropped, unless
``action: flag``). Per group, one of three modes sets the cut:

- ``manual``: ``threshold`` (a perplexity; a z-score with a clean model);
- ``calibrated``: ``labels`` (Parquet: the id column and a 0/1 ``harmful`` column, a uniform
  random sample of a few hundred documents of the run): the cut with the most recall whose
  precision reaches ``target_precision`` with ``confidence`` (Clopper-Pearson lower bound), see
  :mod:`datafilter.selectors.calibration`;
- ``automatic`` (default): a separate low mode of the log-perplexity histogram, found by a
  two-Gaussian fit with guards against skewed and heavy-tailed single modes, see
  :mod:`datafilter.selectors.bimodal`.

The plan records per group which mode decided, the fitted modes, the cut, the estimated share
flagged and, when nothing is flagged, why (also printed as one warning line per group).

With ``clean_scorer_id`` (a model of clean text scored into the same run) the statistic becomes
``ln ppl_clean - ln ppl_harmful`` (high = harmful), flagged above the cut; ``threshold`` is then
a z-score of that statistic within the group.

Everything ``plan`` reads is bounded in memory: per group counts, a histogram of ``bins`` bins,
mean and spread, the documents nearest the cut, and the scores of the labelled documents.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from pydantic import Field, model_validator

from datafilter.aggregate import ScoreStats
from datafilter.errors import InputError
from datafilter.selectors.base import Decision, Selector, SelectorOptions
from datafilter.selectors.bimodal import LowMode, LowModeRules, find_low_mode
from datafilter.selectors.calibration import Calibration, calibrate

MODES = ("automatic", "calibrated", "manual")


class HarmfulOutlierOptions(SelectorOptions):
    threshold: float | None = Field(
        None, description="manual cut: harmful-model perplexity, or a z-score with a clean model"
    )
    labels: str | None = Field(
        None, description="Parquet of labelled documents (id column, 0/1 'harmful'): calibrate"
    )
    labels_id_column: str = Field("id", description="the id column of the labels file")
    target_precision: float = Field(0.9, gt=0, lt=1)
    confidence: float = Field(0.95, ge=0.5, lt=1)
    clean_scorer_id: str | None = None
    action: Literal["drop", "flag"] = "drop"
    bins: int = Field(1024, ge=16, le=65536, description="histogram bins per group")
    min_separation: float = Field(2.0, gt=0, description="Ashman's D the two modes need")
    min_share: float = Field(0.002, ge=0, lt=1, description="smallest harmful mode, share")
    min_docs: int = Field(20, ge=1, description="smallest harmful mode, documents")
    max_share: float = Field(0.5, gt=0, le=1, description="largest harmful mode, share")
    cut: Literal["f1", "posterior"] = Field(
        "f1", description="automatic cut: best F1 under the fit, or the posterior's 0.5 crossing"
    )
    unreliable: Literal["skip", "use"] = Field(
        "skip", description="no clear low mode: flag nothing, or cut where the fit says anyway"
    )
    nearest: int = Field(5, ge=0, description="documents nearest the cut to report per group")

    @model_validator(mode="after")
    def _one_way_to_cut(self) -> HarmfulOutlierOptions:
        if self.threshold is not None and self.labels is not None:
            raise ValueError("threshold and labels both set the cut: give one of them")
        if self.threshold is not None and self.threshold <= 0 and self.clean_scorer_id is None:
            raise ValueError("threshold is a perplexity: it must be above 0")
        return self


class HarmfulOutlier(Selector):
    name = "harmful_outlier"
    Options = HarmfulOutlierOptions
    options: HarmfulOutlierOptions

    def extra_scorers(self) -> list[str]:
        return [self.options.clean_scorer_id] if self.options.clean_scorer_id else []

    def output_columns(self) -> dict[str, pa.DataType]:
        columns = {"harmful_flag": pa.bool_(), "harmful_ppl": pa.float64()}
        if self.options.clean_scorer_id:
            columns["harmful_z"] = pa.float64()
        return columns

    @property
    def _combined(self) -> bool:
        return self.options.clean_scorer_id is not None

    @property
    def _rules(self) -> LowModeRules:
        o = self.options
        return LowModeRules(
            min_separation=o.min_separation,
            min_share=o.min_share,
            max_share=o.max_share,
            min_docs=o.min_docs,
            cut=o.cut,
        )

    # The statistic's axis: ln ppl (harmful = low) or the log ratio (harmful = high). The
    # fit and the calibration work on "harm" = the statistic, negated where harmful is high,
    # so that harmful is always LOW there.
    def _to_harm(self, x):
        return -x if self._combined else x

    def plan(self, stats: ScoreStats) -> dict[str, Any]:
        opts = self.options
        metric = f"log_ratio:{opts.clean_scorer_id}" if self._combined else "ppl"
        hist = stats.histogram(metric, opts.bins, log=not self._combined)
        scale = stats.mean_std(metric) if self._combined else {}
        labelled = self._labelled(stats, metric) if opts.labels else {}
        groups: dict[str, dict[str, Any]] = {}
        warnings: list[str] = []
        notes: list[str] = []
        for g, n in stats.counts().items():
            entry: dict[str, Any] = {"n_docs": n}
            if self._combined:
                mean, std = scale.get(g, (0.0, 1.0))
                entry.update(mean=mean, std=std or 1.0)
            edges, counts = hist.get(g, (np.zeros(2), np.zeros(1)))
            harm_edges = self._to_harm(edges)[::-1] if self._combined else edges
            harm_counts = counts[::-1] if self._combined else counts
            mode = find_low_mode(harm_edges, harm_counts, self._rules)
            entry["fit"] = self._fit_record(mode)
            cut, decision = self._decide_group(g, entry, mode, labelled.get(g))
            entry.update(decision)
            entry["cut"] = cut  # None: nothing flagged
            harm_cut = None if cut is None else self._to_harm(cut)
            share = entry["flagged_share"] = _share_below(harm_edges, harm_counts, harm_cut)
            if share == 0.0 and not entry.get("reason"):
                entry["reason"] = "the cut lies beyond every document of the group"
            if cut is not None:
                if self._combined:
                    entry["cut_z"] = (cut - entry["mean"]) / entry["std"]
                else:
                    entry["cut_ppl"] = math.exp(cut)
            entry["marks"] = self._marks(entry)
            if entry.get("reason"):
                warnings.append(f"group {g!r}: {entry['mode']}: nothing flagged: {entry['reason']}")
            else:
                notes.append(self._summary(g, entry))
            warnings += entry.pop("_warnings", [])
            groups[g] = entry
        self._add_nearest(stats, metric, groups)
        return {
            "metric": metric,
            "combined": self._combined,
            "harmful_side": "high" if self._combined else "low",
            "groups": groups,
            "warnings": warnings,
            "notes": notes,
        }

    # ------------------------------------------------------------------ one group's decision

    def _decide_group(
        self,
        group: str,
        entry: dict[str, Any],
        mode: LowMode,
        labels: tuple[np.ndarray, np.ndarray] | None,
    ) -> tuple[float | None, dict[str, Any]]:
        """The cut (statistic units; None = nothing flagged) and the decision's record."""
        opts = self.options
        nothing = None
        if opts.threshold is not None:
            if self._combined:
                cut = entry["mean"] + opts.threshold * entry["std"]
            else:
                cut = math.log(opts.threshold)
            return cut, {"mode": "manual", "reason": None}
        if opts.labels is not None and labels is not None:
            values, harmful = labels
            calibration = calibrate(
                self._to_harm(values), harmful, opts.target_precision, opts.confidence
            )
            record = {
                "mode": "calibrated",
                "calibration": self._calibration_record(calibration),
                "labels": {"values": values.tolist(), "harmful": harmful.astype(int).tolist()},
                "reason": None if calibration.found else calibration.reason,
            }
            if not calibration.found:
                return nothing, record
            return self._from_harm(calibration.cut), record
        record: dict[str, Any] = {"mode": "automatic", "reason": None}
        if opts.labels is not None:
            record["_warnings"] = [
                f"group {group!r}: no labelled document in this group: the automatic mode decides"
            ]
        if mode.found:
            return self._from_harm(mode.cut), record
        if opts.unreliable == "use" and mode.cut is not None:
            record["forced"] = True
            record.setdefault("_warnings", []).append(
                f"group {group!r}: no clear harmful mode ({mode.reason}); cut anyway where the "
                "two-component fit says (unreliable=use)"
            )
            return self._from_harm(mode.cut), record
        record["reason"] = mode.reason
        return nothing, record

    def _from_harm(self, cut: float) -> float:
        return -cut if self._combined else cut

    def _fit_record(self, mode: LowMode) -> dict[str, Any]:
        """The fits on the statistic's own axis; the harmful component marked."""
        record = {
            k: _json_number(v)
            for k, v in mode.as_dict().items()
            if k not in ("one", "two", "n_docs")
        }
        record["cut"] = None if mode.cut is None else self._from_harm(mode.cut)
        if mode.one is not None:
            c = mode.one.components[0]
            record["one"] = {"mean": self._from_harm(c.mean), "sd": c.sd, "bic": mode.one.bic()}
        if mode.two is not None:
            components = []
            for i, c in enumerate(mode.two.components):
                item = {
                    "weight": c.weight,
                    "mean": self._from_harm(c.mean),
                    "sd": c.sd,
                    "harmful": i == 0,
                }
                if not self._combined:
                    item["ppl"] = math.exp(c.mean)
                components.append(item)
            record["components"] = sorted(components, key=lambda c: c["mean"])
            record["bic"] = mode.two.bic()
        return record

    def _calibration_record(self, c: Calibration) -> dict[str, Any]:
        record = c.as_dict()
        record["cut"] = None if c.cut is None else self._from_harm(c.cut)
        return {k: _json_number(v) for k, v in record.items()}

    def _summary(self, group: str, entry: dict[str, Any]) -> str:
        """One line: what decided, the cut and what it flags."""
        if self._combined:
            where = f"{self._stat_name} > {entry['cut']:.3g} (z > {entry['cut_z']:.2f})"
        else:
            where = f"ppl < {entry['cut_ppl']:.4g}"
        line = (
            f"group {group!r}: {entry['mode']} cut {where} flags about "
            f"{entry['flagged_share']:.2%} of {entry['n_docs']} documents"
        )
        fit = entry["fit"]
        if entry["mode"] == "automatic" and fit.get("components"):
            harmful = next(c for c in fit["components"] if c["harmful"])
            line += (
                f"; harmful mode {self._value_text(harmful['mean'])} ({harmful['weight']:.2%}), "
                f"Ashman's D {fit['separation']:.2f}, expected precision "
                f"{fit['expected_precision']:.2f} and recall {fit['expected_recall']:.2f} "
                "if the fit holds"
            )
        if entry["mode"] == "calibrated":
            c = entry["calibration"]
            p, r = c["precision"], c["recall"]
            line += (
                f"; on {c['n_labels']} labels: precision {p['value']:.2f} [{p['low']:.2f}, "
                f"{p['high']:.2f}] (one-sided {c['confidence']:.0%} bound "
                f"{c['precision_lower']:.2f} >= {c['target']:g}), recall {r['value']:.2f} "
                f"[{r['low']:.2f}, {r['high']:.2f}]"
            )
        return line

    @property
    def _stat_name(self) -> str:
        return f"ln(ppl_{self.options.clean_scorer_id}/ppl)"

    def _value_text(self, x: float) -> str:
        return f"at {self._stat_name} {x:.3g}" if self._combined else f"at ppl {math.exp(x):.4g}"

    def _marks(self, entry: dict[str, Any]) -> list[dict[str, Any]]:
        """Values to draw on a histogram: the fitted modes and the cut (ppl units when
        possible)."""
        unit = (lambda x: x) if self._combined else math.exp
        marks = []
        fitted = entry["fit"].get("found") or entry.get("forced")
        for c in entry["fit"].get("components", []) if fitted else []:
            label = "harmful mode" if c["harmful"] else "clean mode"
            marks.append({"label": label, "value": unit(c["mean"])})
        if entry["cut"] is not None:
            keeps = "below" if self._combined else "above"
            if self.options.action == "flag":
                keeps = None
            mark = {"label": "cut", "value": unit(entry["cut"]), "kind": "threshold"}
            if keeps:
                mark["keeps"] = keeps
            marks.append(mark)
        return marks

    def _add_nearest(self, stats: ScoreStats, metric: str, groups: dict[str, dict]) -> None:
        if not self.options.nearest:
            return
        unit = (lambda x: x) if self._combined else math.exp
        values = {g: unit(e["cut"]) for g, e in groups.items() if e["cut"] is not None}
        for g, docs in stats.nearest(metric, values, self.options.nearest).items():
            groups[g]["nearest"] = [{"doc_id": d, "value": v} for d, v in docs]

    # ------------------------------------------------------------------ labels

    def _labelled(
        self, stats: ScoreStats, metric: str
    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per group: the statistic and the 0/1 label of each labelled document, looked up by
        id (only the labelled documents' scores are read)."""
        path = str(self.options.labels)
        labels = read_labels(path, self.options.labels_id_column)
        found = stats.lookup(metric, list(labels))
        seen = {doc_id for doc_id, _, _ in found}
        missing = [i for i in labels if i not in seen]
        if missing:
            raise InputError(
                f"{len(missing)} of the {len(labels)} labelled ids are not among the run's "
                f"scored documents (e.g. {missing[0]!r}): label documents of this run",
                path=path,
            )
        per_group: dict[str, list[tuple[float, bool]]] = defaultdict(list)
        for doc_id, group, value in found:
            x = value if self._combined else math.log(value) if value > 0 else -math.inf
            if math.isfinite(x):
                per_group[group].append((x, labels[doc_id]))
        return {
            g: (np.array([v for v, _ in rows]), np.array([y for _, y in rows], dtype=bool))
            for g, rows in per_group.items()
        }

    # ------------------------------------------------------------------ per shard

    def decide(
        self, scores: dict[str, np.ndarray], groups: np.ndarray, plan: dict[str, Any], seed: int
    ) -> Decision:
        ppl = scores["ppl"]
        with np.errstate(divide="ignore", invalid="ignore"):
            if self._combined:
                stat = np.log(scores[f"{self.options.clean_scorer_id}:ppl"]) - np.log(ppl)
            else:
                stat = np.log(ppl)
        flagged = np.zeros(len(ppl), dtype=bool)
        z = np.full(len(ppl), np.nan)
        for group, params in plan["groups"].items():
            rows = groups == group
            if self._combined:
                z[rows] = (stat[rows] - params["mean"]) / params["std"]
            cut = params["cut"]
            if cut is not None:  # None: nothing flagged in this group
                flagged |= rows & ((stat > cut) if self._combined else (stat < cut))
        columns: dict[str, np.ndarray] = {"harmful_flag": flagged, "harmful_ppl": ppl}
        if self._combined:
            columns["harmful_z"] = z
        keep = ~flagged if self.options.action == "drop" else ~np.isnan(ppl)
        return Decision(keep=keep, drop_reason="harmful_outlier", columns=columns)


def read_labels(path: str, id_column: str) -> dict[str, bool]:
    """id -> harmful from a Parquet file; one clear error for a missing column, a bad label or
    an id labelled both ways."""
    from datafilter.io.shards import open_parquet
    from datafilter.io.storage import location

    pf = open_parquet(location(path))
    names = pf.schema_arrow.names
    for column in (id_column, "harmful"):
        if column not in names:
            raise InputError(
                f"labels need columns {id_column!r} and 'harmful' (0/1); found "
                f"{', '.join(names)}" + (" (set labels_id_column)" if column == id_column else ""),
                path=path,
            )
    table = pf.read(columns=[id_column, "harmful"])
    labels: dict[str, bool] = {}
    ids, values = table.column(0).to_pylist(), table.column(1).to_pylist()
    for row, (doc_id, value) in enumerate(zip(ids, values, strict=True)):
        if doc_id is None:
            raise InputError(f"null id in {id_column!r}", path=path, row=row)
        if isinstance(value, bool) or value in (0, 1):
            label = bool(value)
        else:
            raise InputError(f"'harmful' is {value!r}; labels are 0 or 1", path=path, row=row)
        key = str(doc_id)
        if labels.get(key, label) != label:
            raise InputError(f"id {key!r} is labelled both 0 and 1", path=path, row=row)
        labels[key] = label
    if not labels:
        raise InputError("no labelled documents", path=path)
    return labels


def _share_below(edges: np.ndarray, counts: np.ndarray, cut: float | None) -> float:
    """Share of the histogram's documents below ``cut`` (linear within the bin holding it)."""
    total = float(np.sum(counts))
    if total == 0 or cut is None or not cut > edges[0]:
        return 0.0
    if cut >= edges[-1]:
        return 1.0
    j = int(np.searchsorted(edges, cut, side="right") - 1)
    part = (cut - edges[j]) / (edges[j + 1] - edges[j])
    return float((np.sum(counts[:j]) + part * counts[j]) / total)


def _json_number(v: Any) -> Any:
    """NaN becomes None (JSON has no NaN); the rest unchanged."""
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, dict):
        return {k: _json_number(x) for k, x in v.items()}
    return v


