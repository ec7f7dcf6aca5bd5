"""Score documents inside your own Ray Data pipeline: a callable class for ``map_batches``.

    import ray
    from datafilter.ray_data import ScoreBatches

    ds = ray.data.read_parquet("corpus/")
    ds = ds.map_batches(
        ScoreBatches,
        fn_constructor_kwargs={"scorer": "kenlm", "options": {"model": "model/"}},
        batch_format="pyarrow",
        concurrency=4,  # actors: each loads the model once
    )
    kept = ds.filter(lambda row: row["datafilter_reject_reason"] is None)

Each actor builds the scorer once. Every batch gets the score stage's columns, computed by the
score stage's own per-batch function (:func:`datafilter.stages.score.score_columns`), so the
rejection rules (null, empty, invalid UTF-8, too long, null id, no tokens, non-finite score)
and the numbers are the stage's: ``datafilter_logprob_sum``, ``_n_tokens``, ``_n_bytes``,
``_ppl``, ``_bpb`` (NaN for a rejected row) and ``_reject_reason`` (null for a scored row).
Thresholds and plans need the whole corpus: use the stages (``datafilter score``) for those.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from datafilter.errors import ConfigError, InputError
from datafilter.scorers import make_scorer
from datafilter.stages.score import ScoreSettings, score_columns

PREFIX = "datafilter_"


class ScoreBatches:
    """``ray.data.Dataset.map_batches`` callable: adds the score stage's columns to a batch.

    ``scorer`` and ``options`` name a registered scorer as ``datafilter score`` does;
    ``text_column``, ``id_column`` (a null id is rejected as ``null_id``) and
    ``max_doc_bytes`` are the stage's settings. Batches may be ``pyarrow`` tables (best: no
    copy), pandas frames or dicts of numpy arrays; the result has the same kind."""

    def __init__(
        self,
        scorer: str = "kenlm",
        options: dict[str, Any] | None = None,
        *,
        text_column: str = "text",
        id_column: str | None = None,
        max_doc_bytes: int = ScoreSettings.model_fields["max_doc_bytes"].default,
        prefix: str = PREFIX,
    ):
        self.settings = ScoreSettings(
            text_column=text_column, id_column=id_column, max_doc_bytes=max_doc_bytes
        )
        self.prefix = prefix
        self.scorer = make_scorer(scorer, options or {})
        self.scorer.validate()
        self.scorer.setup()

    def __call__(self, batch: Any) -> Any:
        table = _as_table(batch)
        settings = self.settings
        if settings.text_column not in table.column_names:
            raise InputError(
                f"column {settings.text_column!r} not found; columns are "
                f"{', '.join(table.column_names)}"
            )
        if settings.id_column:
            if settings.id_column not in table.column_names:
                raise InputError(f"id column {settings.id_column!r} not found")
            ids = [None if v is None else str(v) for v in table[settings.id_column].to_pylist()]
        else:
            ids = [""] * table.num_rows  # no id: never rejected as null_id
        columns = score_columns(table[settings.text_column], ids, self.scorer, settings)
        for name, values in columns.items():
            column = self.prefix + name
            if column in table.column_names:
                raise ConfigError(f"the batch already has a column {column}; pass another prefix")
            table = table.append_column(column, values)
        return _like(batch, table)


def _as_table(batch: Any) -> pa.Table:
    if isinstance(batch, pa.Table):
        return batch
    if isinstance(batch, dict):
        return pa.table({k: pa.array(list(v)) if _is_object(v) else v for k, v in batch.items()})
    return pa.Table.from_pandas(batch, preserve_index=False)  # a pandas DataFrame


def _is_object(values: Any) -> bool:
    return getattr(getattr(values, "dtype", None), "kind", "") == "O"


def _like(batch: Any, table: pa.Table) -> Any:
    if isinstance(batch, pa.Table):
        return table
    if isinstance(batch, dict):
        return {name: table[name].to_numpy(zero_copy_only=False) for name in table.column_names}
    return table.to_pandas()
