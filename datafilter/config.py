"""The YAML config of ``datafilter run``: every stage's settings in one validated file, and the
strict YAML loader every config file goes through.

Each section is its stage's own options model (``score:`` is :class:`ScoreOptions`, ``select:``
:class:`SelectOptions`, ``ray:`` :class:`RuntimeOptions`, ...), the same model the command's
flags and the Python API's keyword arguments fill; the paths shared by the stages (``input``,
``run_dir``) sit at the top.

Relative paths are taken relative to the current working directory. ``input``, ``run_dir`` and
``select.output`` may also be object-storage URIs (``s3://bucket/prefix``), configured by the
``storage:`` section (pyarrow filesystem options per scheme) and the environment (``AWS_*``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from datafilter.demo_corpus import DemoCorpusOptions
from datafilter.errors import ConfigError
from datafilter.kenlm.options import TrainKenlmOptions
from datafilter.registry import strict_validate
from datafilter.runtime import RuntimeOptions
from datafilter.stages.combine import CombineOptions
from datafilter.stages.evaluate import EvaluateOptions
from datafilter.stages.score import ScoreOptions
from datafilter.stages.select import SelectOptions
from datafilter.stages.thresholds import ThresholdsSettings
from datafilter.validation import explain

M = TypeVar("M", bound=BaseModel)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RunThresholdsOptions(ThresholdsSettings):
    """The run config's ``thresholds:`` section: the thresholds command's settings, with a
    percentile table per ``group_by`` entry (the plan is made for the ``select:`` section's
    selector, options and group column)."""

    group_by: list[str | None] = Field(
        [None], description="one percentile table per entry (null: over all documents)"
    )


class RunConfig(_Strict):
    """``input`` shards → ``run_dir`` (scores, thresholds, plan) → ``select.output`` (filtered
    shards). Each stage's section is that stage's own options model."""

    input: str
    run_dir: str
    demo_corpus: DemoCorpusOptions | None = None
    train_kenlm: TrainKenlmOptions | None = None
    score: ScoreOptions = ScoreOptions()
    # score ids of the run (the score section's, and any scored before) summed into a derived one
    combine: CombineOptions | None = None
    thresholds: RunThresholdsOptions = RunThresholdsOptions()
    select: SelectOptions
    # Optional last step: proxy models on candidate selections of the same run folder.
    evaluate: EvaluateOptions | None = None
    ray: RuntimeOptions = RuntimeOptions()
    # pyarrow filesystem options per URI scheme, e.g. {"s3": {"endpoint_override": "...",
    # "region": "..."}}; keep credentials in the environment (AWS_ACCESS_KEY_ID, ...).
    storage: dict[str, dict[str, Any]] = {}

    @property
    def scorer_id(self) -> str:
        """The scores the thresholds and select steps read: the combine section's when there is
        one, else the score section's."""
        if self.combine is not None:
            return self.combine.name
        return self.score.scorer_id or self.score.scorer


def load_config(path: str | Path) -> RunConfig:
    """Parse and validate a run config, the scorer's and the selector's options included (a
    typo in ``select.options`` is found now, not after scoring); errors name the file and the
    offending keys."""
    cfg = load_yaml_model(path, RunConfig)
    check_plugins(cfg, str(path))
    return cfg


def check_plugins(cfg: RunConfig, where: str = "config") -> None:
    """The ``score:`` and ``select:`` sections' plugin names and options, validated by the
    plugins' own option models; a ConfigError naming the file and key otherwise."""
    from datafilter.registry import parse_options
    from datafilter.scorers import SCORERS
    from datafilter.selectors import SELECTORS

    problems = []
    for section, registry, name, options in (
        ("score", SCORERS, cfg.score.scorer, cfg.score.options),
        ("select", SELECTORS, cfg.select.selector, cfg.select.options),
    ):
        try:
            cls = registry.get(name)
            parse_options(cls.Options, options, f"{section}.options ({registry.kind} {name!r})")
        except ConfigError as exc:
            problems.append(f"{section}: {exc}")
    if problems:  # every section's mistakes at once, on one line
        raise ConfigError(f"{where}: {'; '.join(problems)}")


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


def load_yaml_file(path: str | Path) -> dict[str, Any]:
    """A YAML file's mapping (empty for an empty file); errors name the file."""
    file = Path(path)
    try:
        raw = load_yaml(file.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {file} not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML ({' '.join(str(exc).split())})") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{file}: expected a mapping of option names to values")
    return raw


def load_yaml_model(path: str | Path, model: type[M]) -> M:
    """Parse a YAML file into ``model``; errors name the file and the offending keys.

    Values are checked strictly: ``keep: true`` is not 1.0 and ``"0.5"`` is not a number."""
    file = Path(path)
    raw = load_yaml_file(file)
    try:
        return strict_validate(model, raw)
    except ValidationError as exc:
        raise ConfigError(explain(exc, model, str(file))) from None
