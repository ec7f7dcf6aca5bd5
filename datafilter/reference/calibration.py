"""Per-fold calibration of cross-fitted scores: every fold's scale mapped onto one common scale.

A document's fold is a hash of its text, so every fold is a random sample of the same corpus and
its score distribution would be the same but for the model that scored it. Fold models trained
alike still differ in scale (their mean log-perplexity differs), and pooled percentiles would
then cut one fold's documents more than another's: which fold a document hashed into would move
it across a threshold. So the thresholds stage standardises each fold before pooling.

Method: robust standardisation per fold, of ``ln(ppl)`` and of ``bpb`` (both log-losses)::

    x' = M + D * (x - m_f) / d_f    i.e.  x' = shift_f + scale_f * x

with ``m_f``, ``d_f`` fold f's median and MAD (median absolute deviation) over its valid scored
documents, and ``M``, ``D`` the document-weighted means of the folds' medians and MADs (so the
calibrated score keeps the units of the raw one and every selector works on it unchanged);
``ppl' = exp(ln(ppl)')``. Why median/MAD rather than per-fold quantile ranks: it is two numbers per
fold and metric, recorded in the plan and applied by ``select`` shard by shard with no other
shard at hand, it is monotone within a fold (a fold's own order is never changed) and robust to
the long tail of junk documents; quantile ranks would also remove differences of shape between
folds, but need each fold's whole distribution wherever a score is calibrated. Location and
scale are what differ between fold models trained alike. A fold whose MAD is 0 is only shifted.
With one fold there is nothing to calibrate (``None``).
"""

from __future__ import annotations

from typing import Any

METHOD = "per-fold median/MAD of ln(ppl) and bpb, mapped to the folds' weighted mean median/MAD"
# fold -> (ppl shift, ppl scale, bpb shift, bpb scale): ln(ppl)' = shift + scale * ln(ppl).
FoldMaps = dict[int, tuple[float, float, float, float]]


def _affine(median: float, mad: float, ref_median: float, ref_mad: float) -> tuple[float, float]:
    """(shift, scale) mapping a fold's (median, MAD) onto the reference's."""
    scale = ref_mad / mad if mad > 0 and ref_mad > 0 else 1.0
    return ref_median - scale * median, scale


def fold_calibration(stats: dict[int, dict[str, Any]]) -> dict[str, Any] | None:
    """The calibration record of the folds' statistics (:func:`datafilter.aggregate.
    fold_statistics`: fold -> n_docs, ppl_median_log, ppl_mad_log, bpb_median, bpb_mad, ...),
    or None with fewer than two folds."""
    if len(stats) < 2:
        return None
    total = sum(s["n_docs"] for s in stats.values())

    def weighted(key: str) -> float:
        return sum(s["n_docs"] * s[key] for s in stats.values()) / total

    ref = {
        "ppl": {"median_log": weighted("ppl_median_log"), "mad_log": weighted("ppl_mad_log")},
        "bpb": {"median": weighted("bpb_median"), "mad": weighted("bpb_mad")},
    }
    folds: dict[str, Any] = {}
    for fold, s in sorted(stats.items()):
        ppl = _affine(s["ppl_median_log"], s["ppl_mad_log"], *ref["ppl"].values())
        bpb = _affine(s["bpb_median"], s["bpb_mad"], *ref["bpb"].values())
        folds[str(fold)] = {
            "n_docs": s["n_docs"],
            "ppl": {
                "median_log": s["ppl_median_log"],
                "mad_log": s["ppl_mad_log"],
                "mean_log": s.get("ppl_mean_log"),
                "shift": ppl[0],
                "scale": ppl[1],
            },
            "bpb": {
                "median": s["bpb_median"],
                "mad": s["bpb_mad"],
                "shift": bpb[0],
                "scale": bpb[1],
            },
            "quantiles_log_ppl": s.get("quantiles_log_ppl", {}),
        }
    return {"method": METHOD, "column": "fold", "reference": ref, "folds": folds}


def fold_maps(calibration: dict[str, Any] | None) -> FoldMaps:
    """The affine maps of a calibration record (empty for None): what the SQL view and select
    apply."""
    if not calibration:
        return {}
    return {
        int(fold): (f["ppl"]["shift"], f["ppl"]["scale"], f["bpb"]["shift"], f["bpb"]["scale"])
        for fold, f in calibration["folds"].items()
    }
