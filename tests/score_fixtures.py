"""Synthetic input and score shards for testing thresholds and selectors without a model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from datafilter.aggregate import ScoreFiles
from datafilter.scorers.columns import SCORE_SCHEMA, id_hash


def write_scored_shards(
    root: Path, ppl_per_shard: list[list[float]], groups_per_shard: list[list[str | None]]
) -> ScoreFiles:
    """Input shards (id, domain) and row-aligned score shards with the given perplexities."""
    score_files, input_files = [], []
    for i, (ppls, groups) in enumerate(zip(ppl_per_shard, groups_per_shard, strict=True)):
        ids = [f"s{i}-{r}" for r in range(len(ppls))]
        input_path = root / "input" / f"part-{i}.parquet"
        score_path = root / "scores" / f"part-{i}.parquet"
        input_path.parent.mkdir(parents=True, exist_ok=True)
        score_path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"id": ids, "domain": pa.array(groups, pa.string())}), input_path)
        ppl = np.array(ppls, dtype=np.float64)
        n_tokens = np.full(len(ppls), 10, dtype=np.int64)
        table = pa.table(
            {
                "doc_id": ids,
                "row": np.arange(len(ppls), dtype=np.int64),
                "id_hash": pa.array([id_hash(x) for x in ids], pa.uint64()),
                "logprob_sum": -np.log(ppl) * n_tokens,
                "n_tokens": n_tokens,
                "n_bytes": np.full(len(ppls), 50, dtype=np.int64),
                "ppl": ppl,
                "bpb": np.log(ppl) * 10 / (np.log(2) * 50),
                "reject_reason": pa.array([None] * len(ppls), pa.string()),
            },
            schema=SCORE_SCHEMA,
        )
        pq.write_table(table, score_path)
        score_files.append(str(score_path))
        input_files.append(str(input_path))
    return ScoreFiles(score_files=score_files, input_files=input_files)
