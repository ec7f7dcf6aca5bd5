"""Optional fastText distillation of the chosen domains (Thrush et al.): a classifier learns
include (documents of domains with weight > 0) against exclude (the other estimated domains),
scores every document of the run, and the selector then takes documents by the probability of
"include", highest first, until the budget is met. Needs the ``fasttext`` extra.

Output folder: ``model.bin``, ``classifier.json`` (labels, sizes, held-out accuracy, options) and
``probabilities/<shard>.parquet`` (``p_include``, row-aligned with each input shard).
"""

from __future__ import annotations

import logging
import re
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from datafilter.correlation.domains import DomainSpec, domains_of
from datafilter.correlation.selection import load_weights
from datafilter.errors import ConfigError, InputError, MissingDependencyError
from datafilter.io.atomic import atomic_path, write_json, write_table
from datafilter.io.layout import RunLayout
from datafilter.io.markers import file_fingerprint
from datafilter.io.record import finished_score_shards, require_record, resolve_scorer_id
from datafilter.io.shards import open_shard
from datafilter.selectors.order import at_or_before
from datafilter.selectors.random_keys import uniform

log = logging.getLogger(__name__)

CLASSIFIER_FILE = "classifier.json"
INCLUDE, EXCLUDE = "__label__include", "__label__exclude"
_SPACE = re.compile(r"\s+")


def _fasttext():
    try:
        import fasttext
    except ImportError:
        raise MissingDependencyError(
            "fastText distillation needs fasttext: pip install 'datafilter[fasttext]'"
        ) from None
    return fasttext


def _line(text: str) -> str:
    return _SPACE.sub(" ", text).strip()


def distill(
    run_dir: str | Path,
    weights: str | Path,
    output: str | Path,
    domain: DomainSpec,
    *,
    scorer_id: str | None = None,
    max_per_label: int = 20000,
    holdout: float = 0.1,
    epoch: int = 5,
    lr: float = 0.1,
    dim: int = 32,
    word_ngrams: int = 2,
    bucket: int = 200_000,
    seed: int = 0,
) -> dict[str, Any]:
    """Train the include/exclude classifier on the run's documents and score all of them."""
    fasttext = _fasttext()
    if not 0 <= holdout < 1:
        raise ConfigError(f"holdout must be in [0, 1), got {holdout}")
    layout = RunLayout.at(run_dir)
    record = require_record(layout)
    sid = resolve_scorer_id(record, scorer_id)
    pairs = finished_score_shards(layout, record, sid)
    table = load_weights(weights)
    labelled = table.estimated
    out = Path(output).expanduser().resolve()
    chosen = _training_rows(pairs, domain, table.weight, labelled, max_per_label, seed)
    if len(set(chosen["label"].tolist())) < 2:
        raise InputError(
            "the run has documents of only one label (include or exclude): nothing to learn"
        )
    test = uniform(chosen["hash"], seed + 1) < holdout
    with tempfile.TemporaryDirectory(prefix="corr-distill-") as tmp:
        train_file, test_file = Path(tmp) / "train.txt", Path(tmp) / "test.txt"
        _write_examples(pairs, record.text_column, chosen, ~test, train_file)
        _write_examples(pairs, record.text_column, chosen, test, test_file)
        model = fasttext.train_supervised(
            input=str(train_file), epoch=epoch, lr=lr, dim=dim, wordNgrams=word_ngrams,
            bucket=bucket, minCount=1, thread=1, seed=seed, verbose=0,
        )  # fmt: skip
        accuracy = _accuracy(model, test_file) if test.any() else None
        with atomic_path(out / "model.bin") as model_tmp:
            model.save_model(str(model_tmp))
    shards = {}
    for shard, _ in pairs:
        p = _probabilities(model, shard.path, record.text_column)
        rel = f"probabilities/{shard.rel}"
        write_table(out / rel, pa.table({"p_include": pa.array(p, pa.float64())}))
        shards[str(shard.path)] = {
            "probabilities": rel,
            "rows": len(p),
            "input": file_fingerprint(shard.path),
        }
    labels = chosen["label"]
    summary = {
        "run": str(layout.root),
        "scorer_id": sid,
        "weights": str(Path(weights).expanduser().resolve()),
        "domain": domain.describe(),
        "train": {
            "include": int((labels[~test] == 1).sum()),
            "exclude": int((labels[~test] == 0).sum()),
        },  # fmt: skip
        "test": {"documents": int(test.sum()), "accuracy": accuracy},
        "options": {
            "max_per_label": max_per_label,
            "holdout": holdout,
            "epoch": epoch,
            "lr": lr,
            "dim": dim,
            "word_ngrams": word_ngrams,
            "bucket": bucket,
            "seed": seed,
        },  # fmt: skip
        "shards": shards,
    }
    write_json(out / CLASSIFIER_FILE, summary)
    log.info(
        f"corr-distill: trained on {summary['train']} documents, held-out accuracy "
        f"{accuracy if accuracy is None else round(accuracy, 4)}; scored {len(shards)} shards "
        f"-> {out}"
    )
    return summary


def _training_rows(pairs, domain: DomainSpec, weight, labelled, max_per_label: int, seed: int):
    """Up to ``max_per_label`` documents per label, those with the smallest (seed, id) keys."""
    parts = []
    for index, (shard, score_path) in enumerate(pairs):
        names = domains_of(open_shard(shard.path).read(columns=[domain.column])[domain.column],
                           domain)  # fmt: skip
        scores = pq.read_table(score_path, columns=["id_hash", "reject_reason"])
        valid = np.array([r is None for r in scores["reject_reason"].to_pylist()], dtype=bool)
        known = np.array([d in labelled for d in names], dtype=bool)
        label = np.array([1 if weight.get(d, 0) > 0 else 0 for d in names], dtype=np.int64)
        rows = np.flatnonzero(valid & known)
        hashes = scores["id_hash"].to_numpy()[rows]
        parts.append((np.full(len(rows), index), rows, hashes, label[rows]))
    shard = np.concatenate([p[0] for p in parts])
    row = np.concatenate([p[1] for p in parts])
    hashes = np.concatenate([p[2] for p in parts]).astype(np.uint64)
    label = np.concatenate([p[3] for p in parts])
    key = uniform(hashes, seed)
    keep = np.zeros(len(row), dtype=bool)
    for value in (0, 1):
        members = np.flatnonzero(label == value)
        order = members[np.lexsort((row[members], shard[members], key[members]))]
        keep[order[:max_per_label]] = True
    return {"shard": shard[keep], "row": row[keep], "hash": hashes[keep], "label": label[keep]}


def _write_examples(pairs, text_column: str, chosen, mask: np.ndarray, path: Path) -> None:
    with path.open("w", encoding="utf-8") as f:
        for index, (shard, _) in enumerate(pairs):
            picked = mask & (chosen["shard"] == index)
            if not picked.any():
                continue
            texts = open_shard(shard.path).read(columns=[text_column])[text_column]
            rows = chosen["row"][picked]
            for text, label in zip(texts.take(pa.array(rows)).to_pylist(),
                                   chosen["label"][picked], strict=True):  # fmt: skip
                f.write(f"{INCLUDE if label else EXCLUDE} {_line(text)}\n")


def _accuracy(model, path: Path) -> float:
    right = total = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        label, _, text = line.partition(" ")
        predicted = model.predict(text, k=1)[0][0]
        right += predicted == label
        total += 1
    return right / total if total else float("nan")


def _probabilities(model, path, text_column: str) -> np.ndarray:
    """P(include) of every row of an input shard; NaN where the text is null or not UTF-8."""
    pf = open_shard(path)
    out = np.full(pf.metadata.num_rows, np.nan)
    offset = 0
    for batch in pf.iter_batches(batch_size=4096, columns=[text_column]):
        texts = batch.column(0).to_pylist()
        ok = [i for i, t in enumerate(texts) if isinstance(t, str)]
        if ok:
            labels, probs = model.predict([_line(texts[i]) for i in ok], k=2)
            for i, names, values in zip(ok, labels, probs, strict=True):
                scores = dict(zip(names, values, strict=True))
                out[offset + i] = min(1.0, float(scores.get(INCLUDE, 0.0)))
        offset += batch.num_rows
    return out


def probability_plan(folder: str | Path, stats, unit: str, budget: int) -> dict[str, Any]:
    """The cutoff (p, id_hash, score shard, row) that fills ``budget`` with the most probable
    documents, and which probability file belongs to which score shard."""
    from datafilter.aggregate import Database
    from datafilter.correlation.per_domain import UNIT_COLUMNS

    root = Path(folder).expanduser().resolve()
    record_path = root / CLASSIFIER_FILE
    if not record_path.is_file():
        raise InputError(f"no {CLASSIFIER_FILE}: not a corr-distill folder", path=str(root))
    import json

    record = json.loads(record_path.read_text())
    files = {}
    for input_file, score_file in stats.score_file_of.items():
        entry = record["shards"].get(input_file)
        if entry is None or entry["input"] != file_fingerprint(Path(input_file)):
            raise InputError(
                f"{input_file} has no probabilities or changed since corr-distill; run it again",
                path=str(root),
            )
        files[score_file] = str(root / entry["probabilities"])
    db = Database(hint="use fewer or smaller shards")
    db.register(
        "prob_map", pa.table({"score_file": list(files), "prob_file": list(files.values())})
    )
    rows = db.query(
        "WITH p AS (SELECT filename AS prob_file, file_row_number AS row, p_include "
        "FROM read_parquet($probs, filename=true, file_row_number=true)), "
        "s AS (SELECT s.filename AS score_file, s.row, s.id_hash, "
        f"s.{UNIT_COLUMNS[unit]} AS amount, p.p_include "
        "FROM read_parquet($scores, filename=true) s "
        "JOIN prob_map m ON m.score_file = s.filename "
        "JOIN p ON p.prob_file = m.prob_file AND p.row = s.row "
        "WHERE s.reject_reason IS NULL AND isfinite(p.p_include)), "
        "c AS (SELECT *, sum(amount) OVER (ORDER BY p_include DESC, id_hash, score_file, row "
        "ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS cum FROM s) "
        "SELECT count(*) FILTER (WHERE cum <= $budget), "
        "coalesce(sum(amount) FILTER (WHERE cum <= $budget), 0), "
        "arg_max(struct_pack(p := p_include, id_hash := id_hash, shard := score_file, "
        "row := row), cum) FILTER (WHERE cum <= $budget), count(*) FROM c",
        {"probs": list(files.values()), "scores": list(files), "budget": budget},
    )
    kept, kept_amount, last, total = rows[0]
    return {
        "folder": str(root),
        "test_accuracy": record["test"]["accuracy"],
        "files": files,
        "kept_documents": int(kept),
        "kept_amount": int(kept_amount),
        "documents": int(total),
        "last": last,
    }


@lru_cache(maxsize=4)
def _load_probabilities(path: str) -> np.ndarray:
    return pq.read_table(path)["p_include"].to_numpy(zero_copy_only=False)


def keep_by_probability(scores: dict[str, np.ndarray], plan: dict[str, Any]):
    """Keep mask (rows at or before the cutoff in (-p, id_hash, shard, row) order) and p."""
    n = len(scores["row"])
    if n == 0:
        return np.zeros(0, dtype=bool), np.zeros(0)
    probs = _load_probabilities(plan["files"][str(scores["score_file"][0])])
    p = probs[scores["row"]]
    last = plan["last"]
    if last is None:
        return np.zeros(n, dtype=bool), p
    keep = p > last["p"]
    tie = p == last["p"]
    if tie.any():
        keep |= tie & at_or_before(scores, last)
    return keep, p
