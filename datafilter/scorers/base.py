"""The Scorer interface: per-document log-probability sums for a batch of texts."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, field_validator


class ScorerOptions(BaseModel):
    """Base for scorer options: unknown keys are errors; a ``model`` path is made absolute, so
    workers in other directories (or on other nodes) find the same folder."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("model", mode="after", check_fields=False)
    @classmethod
    def _absolute_model(cls, value: Path) -> Path:
        return Path(value).expanduser().resolve()


@dataclass(frozen=True)
class Resources:
    """What one scorer actor needs from the cluster."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0


@dataclass
class BatchScores:
    """Per-document sums for one batch: natural-log probability and predicted-token count."""

    logprob_sum: np.ndarray
    n_tokens: np.ndarray
    # Values of the scorer's extra columns (``Scorer.extra_columns``), one per text.
    columns: dict[str, np.ndarray] = field(default_factory=dict)


class Scorer(ABC):
    """A registered, versioned scorer. The constructor is cheap; ``setup`` loads the model."""

    name: ClassVar[str]
    version: ClassVar[int] = 1
    Options: ClassVar[type[ScorerOptions]] = ScorerOptions
    # Extra score columns it writes (names declared in scorers/columns.py EXTRA_COLUMNS).
    extra_columns: ClassVar[tuple[str, ...]] = ()

    def __init__(self, options: ScorerOptions):
        self.options = options

    def resources(self) -> Resources:
        return Resources()

    def validate(self) -> None:  # noqa: B027 - optional hook
        """Cheap checks on the driver before any work is scheduled (model folder present…)."""

    def describe(self) -> dict[str, Any]:
        """What identifies these scores: name, version, options (recorded with every shard)."""
        return {
            "scorer": self.name,
            "version": self.version,
            "options": self.options.model_dump(mode="json"),
        }

    @abstractmethod
    def setup(self) -> None:
        """Load the model; called once per actor."""

    @abstractmethod
    def score_batch(self, texts: list[str]) -> BatchScores:
        """Score each text; every text is a non-empty, valid string."""
