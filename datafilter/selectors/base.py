"""The Selector interface: a plan from corpus statistics, then a pure per-row decision."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from datafilter.aggregate import ScoreStats


class SelectorOptions(BaseModel):
    """Base for selector options: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


@dataclass
class Decision:
    """Which rows to keep, why the others were dropped, and any extra output columns.

    ``drop_reason`` is one reason for every dropped row, or an array with a reason per row.
    ``columns`` are written beside the kept documents as ``datafilter_<name>``.
    """

    keep: np.ndarray
    drop_reason: str | np.ndarray
    columns: dict[str, np.ndarray] = field(default_factory=dict)


class Selector(ABC):
    """``plan`` runs once on the driver over all scores; ``decide`` is pure and runs per shard."""

    name: ClassVar[str]
    Options: ClassVar[type[SelectorOptions]] = SelectorOptions

    def __init__(self, options: SelectorOptions):
        self.options = options

    def extra_scorers(self) -> list[str]:
        """Scorer ids besides the selected one whose scores ``decide`` needs (as
        ``scores["<id>:ppl"]``/``scores["<id>:bpb"]``)."""
        return []

    def output_columns(self) -> dict[str, pa.DataType]:
        """Name and type of each column ``decide`` returns in ``Decision.columns``."""
        return {}

    @abstractmethod
    def plan(self, stats: ScoreStats) -> dict[str, Any]:
        """JSON-able parameters (thresholds per group), recorded in the manifest."""

    @abstractmethod
    def decide(
        self, scores: dict[str, np.ndarray], groups: np.ndarray, plan: dict[str, Any], seed: int
    ) -> Decision:
        """Keep mask for valid scored rows; ``groups`` holds each row's group key."""
