"""train-reference (tiny preset, CPU) on the demo corpus's real text, and the crossfit scorer."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers_corpus import LOCAL, log_lines, run_cli

torch = pytest.importorskip("torch", reason="train-reference needs the torch extra")
pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from datafilter import api  # noqa: E402
from datafilter.api import train_reference  # noqa: E402
from datafilter.errors import ConfigError  # noqa: E402
from datafilter.reference import fold_of, scoring_fold, text_hash  # noqa: E402
from datafilter.scorers import make_scorer  # noqa: E402


def _pool(corpus, n_per_domain: int = 30) -> dict[str, list[str]]:
    table = pq.read_table(corpus.pool_dir, columns=["text", "domain", "source"]).to_pylist()
    out: dict[str, list[str]] = {}
    for row in table:
        key = "bbc" if row["source"] == "bbc" else row["domain"]
        if len(out.setdefault(key, [])) < n_per_domain:
            out[key].append(row["text"])
    return out


@pytest.fixture(scope="module")
def one_fold(tmp_path_factory, demo_corpus):
    out = tmp_path_factory.mktemp("ref") / "model"
    result = train_reference(
        demo_corpus.reference_dir, out, fraction=0.5, steps=80, log_every=10
    )
    return out, result


def test_loss_decreases(one_fold):
    out, result = one_fold
    history = result["folds"][0]["history"]
    print("loss", [(h["step"], h["loss"]) for h in history])
    assert history[0]["step"] == 1 and history[-1]["step"] == 80
    assert history[-1]["loss"] < history[0]["loss"] - 1.0, history
    assert all(h["tokens_per_s"] > 0 for h in history)
    folder = out / "fold-0"
    for name in ("config.json", "model.safetensors", "tokenizer.json", "training.json"):
        assert (folder / name).is_file(), name
    assert not (folder / "checkpoint.pt").exists()
    record = json.loads((out / "crossfit.json").read_text())
    assert record["folds"] == 1 and record["cross_fitted"] is False
    assert record["reference_kind"] == "corpus"  # the band selector's default: medium


def test_step_lines_say_the_time_left(tmp_path, demo_corpus):
    with log_lines() as lines:
        train_reference(demo_corpus.reference_dir, tmp_path / "m", fraction=0.1, steps=4,
                        log_every=1)  # fmt: skip
    steps = [line for line in lines if " step " in line]
    assert steps[0].startswith("train-reference: fold 0/1 step 1/4 ")
    assert all(line.endswith(" s left") for line in steps[:-1]), steps
    assert "left" not in steps[-1]


def test_held_out_news_beats_other_distributions(one_fold, demo_corpus):
    """The pool's BBC articles are not in the reference set (held out); noise and token soup are
    another distribution."""
    out, _ = one_fold
    scorer = make_scorer("crossfit", {"model": str(out)})
    scorer.setup()
    pool = _pool(demo_corpus)
    medians = {}
    for key in ("bbc", "noise", "tokens"):
        s = scorer.score_batch(pool[key])
        medians[key] = float(np.median(np.exp(-s.logprob_sum / s.n_tokens)))
    print("median ppl", medians)
    assert medians["bbc"] * 1.5 < min(medians["noise"], medians["tokens"]), medians
    # the same folder loads in the plain torch scorer (fold-0 is a normal HF folder)
    plain = make_scorer("torch", {"model": str(out / "fold-0")})
    plain.setup()
    a = plain.score_batch(pool["bbc"][:3]).logprob_sum
    b = scorer.score_batch(pool["bbc"][:3]).logprob_sum
    np.testing.assert_allclose(a, b, rtol=1e-9)


def test_two_folds_never_score_with_the_training_model(tmp_path, demo_corpus):
    out = tmp_path / "model"
    proc = run_cli(
        "train-reference",
        "--input",
        str(demo_corpus.reference_dir),
        "--output",
        str(out),
        "--folds",
        "2",
        "--fraction",
        "0.3",
        "--steps",
        "4",
        "--log-every",
        "2",
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["finished"] and len(result["folds"]) == 2
    assert (out / "fold-0" / "config.json").is_file() and (out / "fold-1" / "config.json").is_file()
    ref = pq.read_table(demo_corpus.reference_dir, columns=["id", "text"]).to_pylist()
    by_hash = {text_hash(r["text"]): r for r in ref}
    split = {j: pq.read_table(out / "split" / f"fold-{j}.parquet").to_pylist() for j in (0, 1)}
    hashes = [{r["text_hash"] for r in split[j]} for j in (0, 1)]
    assert hashes[0] and hashes[1] and not hashes[0] & hashes[1]
    trained_in: dict[str, int] = {}
    for j in (0, 1):
        for row in split[j]:
            doc = by_hash[row["text_hash"]]  # every training document comes from the input
            assert row["id"] == doc["id"] and fold_of(doc["text"], 2) == j
            trained_in[doc["text"]] = j
    # score training documents of both folds plus unseen ones through the normal score stage
    texts = list(trained_in)[:24] + [r["text"] for r in ref if r["text"] not in trained_in][:12]
    shard = tmp_path / "in" / "part-0.parquet"
    shard.parent.mkdir()
    pq.write_table(pa.table({"id": [f"d{i}" for i in range(len(texts))], "text": texts}), shard)
    summary = api.score(
        shard.parent,
        tmp_path / "run",
        scorer="crossfit",
        options={"model": str(out)},
        id_column="id",
        runtime=LOCAL,
    )
    assert summary["scored"] == len(texts)
    scores = pq.read_table(tmp_path / "run" / "scores" / "crossfit" / "part-0.parquet")
    used = [scoring_fold(t, 2) for t in texts]
    for t, j in zip(texts, used, strict=True):
        if t in trained_in:
            assert j != trained_in[t]
    # the scores are those of the model scoring_fold names, and never the other one
    fold_scores = []
    for j in (0, 1):
        sub = make_scorer("torch", {"model": str(out / f"fold-{j}")})
        sub.setup()
        fold_scores.append(sub.score_batch(texts).logprob_sum)
    expected = np.array([fold_scores[j][i] for i, j in enumerate(used)])
    np.testing.assert_allclose(scores["logprob_sum"].to_numpy(), expected, rtol=1e-9)
    assert not np.allclose(fold_scores[0], fold_scores[1])
    # the shards carry the fold model that scored each row, which the thresholds calibrate
    assert scores.schema.field("fold").type == pa.int32()
    assert scores["fold"].to_pylist() == used
    summary = api.thresholds(tmp_path / "run")
    folds = summary["calibration"]["folds"]
    assert sorted(folds) == ["0", "1"]
    assert sum(f["n_docs"] for f in folds.values()) == len(texts)


def test_resume_continues_from_the_checkpoint(tmp_path, demo_corpus):
    kw = dict(fraction=0.2, steps=12, checkpoint_every=4, log_every=1)
    stopped = train_reference(demo_corpus.reference_dir, tmp_path / "m", stop_after=6, **kw)
    assert stopped["finished"] is False and stopped["folds"][0]["step"] == 6
    assert (tmp_path / "m" / "fold-0" / "checkpoint.pt").is_file()
    assert not (tmp_path / "m" / "crossfit.json").exists()
    with pytest.raises(ConfigError, match="resume"):
        train_reference(demo_corpus.reference_dir, tmp_path / "m", **kw)
    resumed = train_reference(demo_corpus.reference_dir, tmp_path / "m", resume=True, **kw)
    fold = resumed["folds"][0]
    assert resumed["finished"] and fold["resumed_from"] == 6 and fold["step"] == 12
    assert [h["step"] for h in fold["history"]] == list(range(1, 13))
    assert (tmp_path / "m" / "fold-0" / "model.safetensors").is_file()
    assert (tmp_path / "m" / "crossfit.json").is_file()
    # the interrupted run ends with the same weights as an uninterrupted one
    straight = train_reference(demo_corpus.reference_dir, tmp_path / "s", **kw)
    assert [h["loss"] for h in straight["folds"][0]["history"]] == [
        h["loss"] for h in fold["history"]
    ]
    from safetensors.torch import load_file

    a = load_file(tmp_path / "m" / "fold-0" / "model.safetensors")
    b = load_file(tmp_path / "s" / "fold-0" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
