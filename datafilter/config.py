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
from datafilter.kenlm.train import KenlmTrainingOptions
from datafilter.registry import strict_validate

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
    overwrite: bool = False  # replace scores made otherwise; use a run folder of foreign files
    verify_inputs: bool = False  # hash every input shard on reruns
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
    overwrite: bool = False  # use an output folder holding foreign files (never deleted)


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


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a mapping that repeats a key (PyYAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key: the base loader reports it
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r}",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_yaml(text: str) -> Any:
    """Parse YAML safely (no tags that build objects), refusing duplicate keys."""
    return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass


def load_yaml_model(path: str | Path, model: type[M]) -> M:
    """Parse a YAML file into ``model``; errors name the file and the offending keys.

    Values are checked strictly: ``keep: true`` is not 1.0 and ``"0.5"`` is not a number."""
    file = Path(path)
    try:
        raw = load_yaml(file.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {file} not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML ({' '.join(str(exc).split())})") from None
    try:
        return strict_validate(model, raw or {})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(config)'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"{file}: {problems}") from None
