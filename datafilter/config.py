"""The YAML config of ``datafilter run``: every stage's settings in one validated file.

Relative paths are taken relative to the current working directory. ``input``, ``run_dir`` and
``select.output`` may also be object-storage URIs (``s3://bucket/prefix``), configured by the
``storage:`` section (pyarrow filesystem options per scheme) and the environment (``AWS_*``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from datafilter.errors import ConfigError
from datafilter.kenlm_train import KenlmTrainingOptions

M = TypeVar("M", bound=BaseModel)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DemoCorpusStep(_Strict):
    output: str
    seed: int = 0
    n_shards: int = Field(4, ge=1)


class TrainKenlmStep(_Strict):
    input: list[str]
    output: str
    text_columns: list[str] = ["text"]
    options: KenlmTrainingOptions = KenlmTrainingOptions()


class ScoreStep(_Strict):
    scorer: str = "kenlm"
    scorer_id: str | None = None
    options: dict[str, Any] = {}
    text_column: str = "text"
    id_column: str | None = None
    batch_rows: int = Field(512, ge=1)
    max_doc_bytes: int = Field(8 * 1024 * 1024, ge=1)


class ThresholdsStep(_Strict):
    group_by: list[str | None] = [None]
    quantiles: list[float] = []
    approx: bool = False
    memory_limit: str | None = None


class SelectStep(_Strict):
    output: str
    selector: str = "perplexity_band"
    options: dict[str, Any] = {}
    group_by: str | None = None
    report_by: str | None = None
    seed: int = 0
    with_scores: bool = False
    memory_limit: str | None = None


class RayStep(_Strict):
    """The executor (see ``runtime.py``): auto, local, process or ray."""

    executor: Literal["auto", "local", "process", "ray"] = "auto"
    address: str | None = None
    num_actors: int | None = Field(None, ge=1)
    local_below: int | str = "8MB"  # auto: input shards under this size run in-process


class RunConfig(_Strict):
    """``input`` shards → ``run_dir`` (scores, thresholds) → ``select.output`` (filtered shards)."""

    input: str
    run_dir: str
    demo_corpus: DemoCorpusStep | None = None
    train_kenlm: TrainKenlmStep | None = None
    score: ScoreStep = ScoreStep()
    thresholds: ThresholdsStep = ThresholdsStep()
    select: SelectStep
    ray: RayStep = RayStep()
    # pyarrow filesystem options per URI scheme, e.g. {"s3": {"endpoint_override": "...",
    # "region": "..."}}; keep credentials in the environment (AWS_ACCESS_KEY_ID, ...).
    storage: dict[str, dict[str, Any]] = {}


def load_config(path: str | Path) -> RunConfig:
    """Parse and validate a run config; errors name the file and the offending keys."""
    return load_yaml_model(path, RunConfig)


def load_yaml_model(path: str | Path, model: type[M]) -> M:
    """Parse a YAML file into ``model``; errors name the file and the offending keys."""
    file = Path(path)
    try:
        raw = yaml.safe_load(file.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {file} not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML ({exc})") from None
    try:
        return model.model_validate(raw or {})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(config)'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"{file}: {problems}") from None
