"""Shared, session-scoped fixtures: a small demo corpus and a KenLM model trained on it.

Both are built once per test session (about 15 s) under pytest's temporary folder. Tests must
treat them as read-only: copy a folder before changing anything in it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from datafilter.demo_corpus import DemoCorpus
from datafilter.errors import MissingDependencyError


def _quiet(_message: str) -> None:
    pass


@pytest.fixture(scope="session")
def demo_corpus(tmp_path_factory: pytest.TempPathFactory) -> DemoCorpus:
    """The demo corpus: ``reference/`` and ``pool/`` (4 shards: id, text, source, domain,
    quality)."""
    from datafilter.demo_corpus import build_demo_corpus

    try:
        return build_demo_corpus(tmp_path_factory.mktemp("shared") / "corpus", log=_quiet)
    except MissingDependencyError as exc:
        pytest.skip(f"demo corpus unavailable: {exc}")


@pytest.fixture(scope="session")
def kenlm_model_dir(tmp_path_factory: pytest.TempPathFactory, demo_corpus: DemoCorpus) -> Path:
    """A small KenLM model folder (order 3, 2000 pieces) trained on the demo reference set."""
    from datafilter.kenlm_train import KenlmTrainingOptions, train_kenlm

    model = tmp_path_factory.mktemp("shared-model") / "model"
    options = KenlmTrainingOptions(order=3, vocab_size=2000, memory="256M")
    try:
        train_kenlm(
            [demo_corpus.reference_dir], model, text_columns=["text"], options=options, log=_quiet
        )
    except MissingDependencyError as exc:
        pytest.skip(f"KenLM model unavailable: {exc}")
    return model
