"""The combine stage: robustly standardised terms of several score ids summed into a derived
score id that every later stage reads like a scorer's.

The small runs here hold score shards with chosen values (written with the run folder's own
record and completion-record helpers, as the score stage writes them), so every expected value
is computed by hand from the definition: z = (x - median) / (1.4826 * MAD)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers_corpus import LOCAL, run_cli

from datafilter import api
from datafilter.errors import ConfigError
from datafilter.io.atomic import write_table
from datafilter.io.content import content_record
from datafilter.io.layout import RunLayout
from datafilter.io.markers import write_marker
from datafilter.io.record import RunRecord, save_record, score_marker_fields
from datafilter.scorers.columns import SCORE_SCHEMA, id_hash
from datafilter.stages.score import ScoreSettings

S = 1.4826  # MAD -> sigma
# Five documents; group column g. kenlm: ln(ppl); smol: bpb, the last document rejected.
LN_PPL = [1.0, 2.0, 4.0, 7.0, 3.0]
BPB = [1.0, 1.5, 2.0, 0.5, None]
GROUPS = ["x", "x", "y", "y", "y"]


def _scores(ids: list[str], ppl: list[float | None], bpb: list[float | None]) -> pa.Table:
    n = len(ids)
    ppl_a = np.array([math.nan if v is None else v for v in ppl])
    bpb_a = np.array([math.nan if v is None else v for v in bpb])
    n_tokens = np.array([0 if v is None else 10 for v in ppl], dtype=np.int64)
    return pa.table(
        {
            "doc_id": ids,
            "row": np.arange(n, dtype=np.int64),
            "id_hash": pa.array([id_hash(x) for x in ids], pa.uint64()),
            "logprob_sum": -np.log(ppl_a) * n_tokens,
            "n_tokens": n_tokens,
            "n_bytes": np.full(n, 50, dtype=np.int64),
            "ppl": ppl_a,
            "bpb": bpb_a,
            "reject_reason": pa.array([None if v is not None else "no_tokens" for v in ppl]),
        },
        schema=SCORE_SCHEMA,
    )


def _add_scores(run: Path, sid: str, shard: Path, table: pa.Table, version: int = 1) -> None:
    """Record scores of ``sid`` for one input shard as the score stage does."""
    layout = RunLayout.at(run)
    record = RunRecord.model_validate(json.loads(layout.record_path.read_text()))
    settings = ScoreSettings(id_column="id").model_dump(mode="json")
    record.scorers[sid] = {"scorer": {"scorer": "hand", "version": version}, "settings": settings}
    save_record(layout, record)
    out = layout.score_path(sid, shard.name)
    write_table(out, table)
    rejected = [r for r in table["reject_reason"].to_pylist() if r]
    stats = {"rows": table.num_rows, "scored": table.num_rows - len(rejected),
             "rejected": {r: rejected.count(r) for r in set(rejected)}}  # fmt: skip
    marker = {**score_marker_fields(record, sid), "input": content_record(shard),
              "output": content_record(out), "stats": stats}  # fmt: skip
    write_marker(layout.marker_path("score", sid, shard.name), marker)


@pytest.fixture
def hand_run(tmp_path: Path) -> Path:
    """A run of one input shard (id, text, g) scored by 'kenlm' and 'smol' with chosen values."""
    inp, run = tmp_path / "input", tmp_path / "run"
    inp.mkdir()
    ids = [f"d{i}" for i in range(5)]
    shard = inp / "part-0.parquet"
    pq.write_table(pa.table({"id": ids, "text": [f"text {i}" for i in ids], "g": GROUPS}), shard)
    run.mkdir()
    save_record(RunLayout.at(run), RunRecord(input=str(inp), text_column="text", id_column="id"))
    ppl = [math.exp(v) for v in LN_PPL]
    _add_scores(run, "kenlm", shard, _scores(ids, ppl, [0.1] * 5))
    smol_ppl = [None if b is None else 2.0 for b in BPB]
    _add_scores(run, "smol", shard, _scores(ids, smol_ppl, BPB))
    return run


def _combined(run: Path, name: str = "mix") -> pa.Table:
    return pq.read_table(run / "scores" / name / "part-0.parquet")


TERMS = ["kenlm:ppl:low", "smol:bpb:both:2"]


def test_exact_values_of_a_hand_computed_example(hand_run: Path) -> None:
    summary = api.combine(hand_run, name="mix", terms=TERMS)
    # kenlm ln(ppl) 1,2,4,7,3: median 3, |x - 3| = 2,1,1,4,0: MAD 1.
    # smol bpb 1.0,1.5,2.0,0.5 (the fifth rejected): median 1.25, deviations .25,.25,.75,.75:
    # MAD 0.5.
    expected = [(x - 3) / (S * 1) + 2 * abs(b - 1.25) / (S * 0.5)
                for x, b in zip(LN_PPL[:4], BPB[:4], strict=True)]  # fmt: skip
    table = _combined(hand_run)
    c = table["bpb"].to_pylist()
    assert c[:4] == pytest.approx(expected, rel=1e-12)
    assert expected[0] == pytest.approx(-2 / 1.4826 + 0.5 / 0.7413, rel=1e-12)
    assert table["ppl"].to_pylist()[:4] == pytest.approx([math.exp(v) for v in expected])
    assert table["logprob_sum"].to_pylist()[:4] == pytest.approx([-10 * v for v in expected])
    assert table["reject_reason"].to_pylist() == [None] * 4 + ["combine:smol:no_tokens"]
    assert math.isnan(c[4])
    assert table["doc_id"].to_pylist() == [f"d{i}" for i in range(5)]
    assert summary["scored"] == 4 and summary["rejected"] == {"combine:smol:no_tokens": 1}
    std = summary["definition"]["standardisation"]
    assert std[0]["groups"]["__all__"] == {"n_docs": 5, "median": 3.0, "mad": 1.0}
    assert std[1]["groups"]["__all__"] == {"n_docs": 4, "median": 1.25, "mad": 0.5}
    record = json.loads((hand_run / "run.json").read_text())
    assert record["scorers"]["mix"]["scorer"]["definition"]["terms"][1] == {
        "scorer_id": "smol", "metric": "bpb", "side": "both", "weight": 2.0}  # fmt: skip


def test_sides_high_and_per_group_medians(hand_run: Path) -> None:
    api.combine(hand_run, name="by_g", terms=["kenlm:ppl:high", "smol:bpb:low"], group_by="g")
    # group x: ln ppl 1,2 -> median 1.5, MAD 0.5; bpb 1.0,1.5 -> median 1.25, MAD 0.25.
    # group y: ln ppl 4,7,3 -> median 4, MAD 1; bpb 2.0,0.5 -> median 1.25, MAD 0.75.
    expected = [
        -(1 - 1.5) / (S * 0.5) + (1.0 - 1.25) / (S * 0.25),
        -(2 - 1.5) / (S * 0.5) + (1.5 - 1.25) / (S * 0.25),
        -(4 - 4) / (S * 1) + (2.0 - 1.25) / (S * 0.75),
        -(7 - 4) / (S * 1) + (0.5 - 1.25) / (S * 0.75),
    ]
    assert _combined(hand_run, "by_g")["bpb"].to_pylist()[:4] == pytest.approx(expected, rel=1e-12)
    groups = json.loads((hand_run / "run.json").read_text())["scorers"]["by_g"]["scorer"]
    assert groups["standardisation"][0]["groups"]["y"] == {"n_docs": 3, "median": 4.0, "mad": 1.0}


def test_reuse_skips_and_a_changed_definition_is_refused(hand_run: Path) -> None:
    api.combine(hand_run, name="mix", terms=TERMS)
    out = hand_run / "scores" / "mix" / "part-0.parquet"
    before = out.stat().st_mtime_ns
    api.combine(hand_run, name="mix", terms=TERMS)  # the same definition: nothing to do
    assert out.stat().st_mtime_ns == before
    with pytest.raises(ConfigError, match="combined otherwise"):
        api.combine(hand_run, name="mix", terms=["kenlm:ppl:low", "smol:bpb:both"])
    with pytest.raises(ConfigError, match="combined otherwise"):
        api.combine(hand_run, name="mix", terms=TERMS, group_by="g")
    with pytest.raises(ConfigError, match="a scorer's scores"):
        api.combine(hand_run, name="kenlm", terms=["smol:bpb:both"])
    old = _combined(hand_run)["bpb"].to_pylist()[0]
    api.combine(hand_run, name="mix", terms=["kenlm:ppl:low", "smol:bpb:both"], overwrite=True)
    assert _combined(hand_run)["bpb"].to_pylist()[0] == pytest.approx(
        -2 / S + 0.25 / (S * 0.5), rel=1e-12
    )
    assert old != _combined(hand_run)["bpb"].to_pylist()[0]


def test_rescored_source_changes_the_definition(hand_run: Path) -> None:
    api.combine(hand_run, name="mix", terms=TERMS)
    shard = Path(json.loads((hand_run / "run.json").read_text())["input"]) / "part-0.parquet"
    ids = [f"d{i}" for i in range(5)]
    _add_scores(hand_run, "smol", shard, _scores(ids, [2.0] * 5, [1.0] * 5), version=2)
    with pytest.raises(ConfigError, match="combined otherwise"):
        api.combine(hand_run, name="mix", terms=TERMS)


def test_bad_terms_are_one_clear_error(hand_run: Path) -> None:
    with pytest.raises(ConfigError, match="no scores named 'nope'"):
        api.combine(hand_run, name="mix", terms=["nope:ppl:low"])
    with pytest.raises(ConfigError, match="ID:METRIC:SIDE"):
        api.combine(hand_run, name="mix", terms=["kenlm:low"])
    with pytest.raises(ConfigError, match="side"):
        api.combine(hand_run, name="mix", terms=["kenlm:ppl:middle"])
    with pytest.raises(ConfigError, match="one of its terms"):
        api.combine(hand_run, name="kenlm2", terms=["kenlm:ppl:low", "kenlm2:ppl:low"])


def test_cli_and_the_missing_scores_counted_in_the_manifest(hand_run: Path, tmp_path) -> None:
    proc = run_cli("combine", "--run", str(hand_run), "--name", "mix",
                   "--term", "kenlm:ppl:low", "--term", "smol:bpb:both:2")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["rejected"] == {"combine:smol:no_tokens": 1}
    plan = api.thresholds(hand_run, scorer_id="mix", selector="perplexity_band",
                          options={"keep": 0.5, "criterion": "low"})["plan"]  # fmt: skip
    manifest = api.select(hand_run, tmp_path / "out", plan=plan, runtime=LOCAL)
    totals = manifest["totals"]
    assert totals["read"] == 5 and totals["rejected"] == 1
    assert manifest["totals"]["rejected_by_reason"] == {"combine:smol:no_tokens": 1}
    kept = pq.read_table(sorted((tmp_path / "out").glob("*.parquet"))).column("id").to_pylist()
    # the two best (lowest) combined values of the four scored documents
    c = _combined(hand_run)["bpb"].to_pylist()[:4]
    assert sorted(kept) == sorted(f"d{i}" for i in np.argsort(c)[:2])


def test_a_term_with_a_mad_of_zero_adds_nothing(hand_run: Path) -> None:
    shard = Path(json.loads((hand_run / "run.json").read_text())["input"]) / "part-0.parquet"
    ids = [f"d{i}" for i in range(5)]
    _add_scores(hand_run, "flat", shard, _scores(ids, [math.exp(2.0)] * 5, [0.1] * 5))
    summary = api.combine(hand_run, name="f", terms=["flat:ppl:low", "smol:bpb:low"])
    assert summary["definition"]["standardisation"][0]["groups"]["__all__"]["mad"] == 0.0
    expected = [(b - 1.25) / (S * 0.5) for b in BPB[:4]]
    assert _combined(hand_run, "f")["bpb"].to_pylist()[:4] == pytest.approx(expected, rel=1e-12)


def test_later_stages_refuse_combined_scores_whose_sources_changed(hand_run: Path) -> None:
    api.combine(hand_run, name="mix", terms=TERMS)
    shard = Path(json.loads((hand_run / "run.json").read_text())["input"]) / "part-0.parquet"
    ids = [f"d{i}" for i in range(5)]
    _add_scores(hand_run, "smol", shard, _scores(ids, [2.0] * 5, [1.0, 1.5, 2.0, 0.5, 3.0]))
    with pytest.raises(ConfigError, match="source scores 'smol' changed"):
        api.thresholds(hand_run, scorer_id="mix")
    summary = api.combine(hand_run, name="mix", terms=TERMS)  # same settings: made again
    assert summary["rejected"] == {} and api.thresholds(hand_run, scorer_id="mix")["n_docs"] == 5
    _add_scores(hand_run, "smol", shard, _scores(ids, [2.0] * 5, [1.0] * 5), version=2)
    with pytest.raises(ConfigError, match="'smol' were made again otherwise"):
        api.thresholds(hand_run, scorer_id="mix")
