"""Cross-fitted scoring with the k reference models of ``datafilter train-reference``.

``model`` is the folder holding ``crossfit.json`` and ``fold-0 .. fold-{k-1}``. Each document is
scored by fold model ``(fold(text) + 1) % k`` (:func:`~datafilter.reference.scoring_fold`):
documents of fold j were only eligible for model j's training sample, so no document is scored
by a model that could have trained on it. With k = 1 the single model scores every document,
which is not cross-fitted. Each fold model runs with the ``torch`` backend and these options.

Score shards carry the ``fold`` column: the fold model that scored the row. Fold models differ in
scale, so the thresholds stage calibrates each fold before pooling (:mod:`datafilter.reference.
calibration`). Version 2 added the column (shards of version 1 are scored again).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from datafilter.errors import ModelError
from datafilter.io.hash_cache import folder_sha256
from datafilter.reference.crossfit import scoring_fold
from datafilter.scorers.base import BatchScores, Resources, Scorer
from datafilter.scorers.columns import FOLD
from datafilter.scorers.torch_lm import TorchLMOptions, TorchLMScorer


class CrossfitScorer(Scorer):
    name = "crossfit"
    version = 2  # torch's version 2 (packed batches, the model's own logits) and the fold column
    Options = TorchLMOptions
    extra_columns = (FOLD,)
    options: TorchLMOptions

    @property
    def folder(self) -> Path:
        return Path(self.options.model).expanduser()

    def resources(self) -> Resources:
        return Resources(num_cpus=1.0, num_gpus=self.options.num_gpus)

    def record(self) -> dict[str, Any]:
        path = self.folder / "crossfit.json"
        if not path.is_file():
            raise ModelError(
                f"{self.folder} has no crossfit.json: not a finished `datafilter "
                "train-reference` output folder"
            )
        return json.loads(path.read_text())

    def fold_dirs(self) -> list[Path]:
        return [self.folder / d for d in self.record()["fold_dirs"]]

    def validate(self) -> None:
        for d in self.fold_dirs():
            if not (d / "config.json").is_file():
                raise ModelError(f"{d} is not a Hugging Face model folder (no config.json)")

    def describe(self) -> dict[str, Any]:
        self.validate()
        info = super().describe()
        digest = hashlib.sha256()
        for d in [self.folder, *self.fold_dirs()]:  # contents (sha256, cached by signature)
            digest.update(json.dumps([d.name, folder_sha256(d)], sort_keys=True).encode())
        info["model_files"] = digest.hexdigest()[:16]
        info["folds"] = len(self.fold_dirs())
        info["reference_kind"] = self.record().get("reference_kind", "unknown")
        return info

    def setup(self) -> None:
        self.models: list[TorchLMScorer] = []
        for d in self.fold_dirs():
            sub = TorchLMScorer(self.options.model_copy(update={"model": d}))
            sub.setup()
            self.models.append(sub)
        self.k = len(self.models)

    def scoring_folds(self, texts: list[str]) -> list[int]:
        return [scoring_fold(t, self.k) for t in texts]

    def score_batch(self, texts: list[str]) -> BatchScores:
        logprob = np.zeros(len(texts))
        n_tokens = np.zeros(len(texts), dtype=np.int64)
        folds = np.array(self.scoring_folds(texts))
        for j, sub in enumerate(self.models):
            idx = np.flatnonzero(folds == j)
            if len(idx) == 0:
                continue
            part = sub.score_batch([texts[i] for i in idx])
            logprob[idx] = part.logprob_sum
            n_tokens[idx] = part.n_tokens
        return BatchScores(
            logprob_sum=logprob, n_tokens=n_tokens, columns={FOLD: folds.astype(np.int32)}
        )
