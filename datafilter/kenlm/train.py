"""Train a SentencePiece unigram model and a KenLM n-gram model on normalised text."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from datafilter.errors import DatafilterError, InputError, MissingDependencyError, ModelError
from datafilter.io.atomic import write_json
from datafilter.io.guard import foreign_entries, place, refuse_overlaps
from datafilter.io.texts import iter_texts
from datafilter.kenlm.model import RECIPE_FILE, KenlmRecipe, load_recipe, without_nul
from datafilter.kenlm.normalize import NormalizationRecipe, normalize
from datafilter.progress import progress_bar


class KenlmTrainingOptions(BaseModel):
    """How to train: n-gram order, vocabulary, lmplz memory cap and pruning."""

    model_config = ConfigDict(extra="forbid")

    order: int = Field(5, ge=2, le=6, description="n-gram order")
    vocab_size: int = Field(16000, ge=100, description="SentencePiece vocabulary size")
    memory: str = Field("20%", description="lmplz memory cap (e.g. 20%, 4G)")
    prune: list[int] = Field([], description="lmplz --prune counts per order (none: no pruning)")
    binary_type: Literal["probing", "trie"] = Field(
        "probing", description="KenLM binary: probing (fast) or trie (small)"
    )
    max_sentences: int = Field(2_000_000, ge=1000, description="lines sampled for SentencePiece")
    normalization: NormalizationRecipe = NormalizationRecipe()


# What a model folder holds: --overwrite replaces a folder only when it holds nothing else.
MODEL_FILES = {"model.bin", "tokenizer.model", "tokenizer.vocab", RECIPE_FILE}


def train_kenlm(
    inputs: list[str | Path],
    output: str | Path,
    *,
    text_columns: list[str] | None = None,
    options: KenlmTrainingOptions | None = None,
    overwrite: bool = False,
    log: Callable[[str], None] = print,
) -> KenlmRecipe:
    """Train a model folder at ``output``; an existing complete folder is reused unless asked."""
    opts = options or KenlmTrainingOptions()
    out = Path(output).expanduser().resolve()
    refuse_overlaps(
        [place("model folder", out)],
        [place("training input", i) for i in inputs],
    )
    if out.exists():
        if (out / RECIPE_FILE).exists() and not overwrite:
            log(f"model folder {out} is complete; reusing it (--overwrite to retrain)")
            return load_recipe(out)
        if not overwrite:
            raise ModelError(f"{out} exists but is not a complete model folder; remove it first")
        # The folder is replaced whole: only if it holds nothing but a model folder's files.
        foreign = foreign_entries(out, MODEL_FILES)
        if foreign:
            raise ModelError(
                f"{out} holds files that are not a KenLM model folder's ({', '.join(foreign[:3])})"
                "; --overwrite replaces only model folders: choose another --output"
            )
    from datafilter.kenlm.tools import ensure_kenlm_tools

    tools = ensure_kenlm_tools(log=log)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.tmp-", dir=out.parent) as tmp_name:
        work = Path(tmp_name)
        start = time.monotonic()
        summary = _write_normalized(inputs, text_columns or ["text"], opts, work / "normalized.txt")
        log(
            f"normalised {summary['documents']} documents, {summary['lines']} lines "
            f"({summary['bytes'] / 1e6:.1f} MB)"
        )
        _train_sentencepiece(work / "normalized.txt", work / "tokenizer", opts, summary["lines"])
        log(f"trained SentencePiece unigram model ({opts.vocab_size} pieces at most)")
        _encode(
            work / "normalized.txt",
            work / "tokenizer.model",
            work / "tokenized.txt",
            total=summary["lines"],
        )
        _run_lmplz(tools.lmplz, work / "tokenized.txt", work / "model.arpa", work, opts)
        log(f"estimated {opts.order}-gram model with lmplz")
        run_tool(
            [
                str(tools.build_binary),
                "-S",
                opts.memory,
                opts.binary_type,
                str(work / "model.arpa"),
                str(work / "model.bin"),
            ],
            "build_binary",
        )
        recipe = KenlmRecipe(
            order=opts.order,
            vocab_size=_vocab_size(work / "tokenizer.model"),
            binary_type=opts.binary_type,
            normalization=opts.normalization,
            reference_kind="clean_reference",
            checksums={name: file_sha256(work / name) for name in ("model.bin", "tokenizer.model")},
            training={
                **summary,
                "inputs": [str(i) for i in inputs],
                "text_columns": text_columns or ["text"],
                "memory": opts.memory,
                "prune": opts.prune,
                "seconds": round(time.monotonic() - start, 1),
            },
        )
        final = work / "final"
        final.mkdir()
        for name in ("model.bin", "tokenizer.model", "tokenizer.vocab"):
            os.replace(work / name, final / name)
        write_json(final / RECIPE_FILE, recipe.model_dump(mode="json"))
        if out.exists():
            shutil.rmtree(out)
        os.replace(final, out)
    log(f"wrote KenLM model folder {out}")
    return recipe


def _write_normalized(
    inputs: list[str | Path], columns: list[str], opts: KenlmTrainingOptions, path: Path
) -> dict[str, int]:
    docs = lines = n_bytes = 0
    with (
        path.open("w", encoding="utf-8") as handle,
        progress_bar(desc="normalising", unit="docs") as bar,
    ):
        for text in iter_texts(inputs, columns):
            docs += 1
            bar.update()
            for raw in text.split("\n"):
                line = without_nul(normalize(raw, opts.normalization))
                if line:
                    handle.write(line + "\n")
                    lines += 1
                    n_bytes += len(line.encode("utf-8")) + 1
    if lines == 0:
        raise InputError("no training text found", path=", ".join(str(i) for i in inputs))
    return {"documents": docs, "lines": lines, "bytes": n_bytes}


def _train_sentencepiece(text: Path, prefix: Path, opts: KenlmTrainingOptions, lines: int) -> None:
    import sentencepiece as spm

    try:
        spm.SentencePieceTrainer.train(
            input=str(text),
            model_prefix=str(prefix),
            vocab_size=opts.vocab_size,
            model_type="unigram",
            character_coverage=0.9999,
            # 0 means every line; a sample only when there are more lines than the cap.
            input_sentence_size=0 if lines <= opts.max_sentences else opts.max_sentences,
            shuffle_input_sentence=True,
            hard_vocab_limit=False,
            num_threads=os.cpu_count() or 1,
            minloglevel=2,
        )
    except RuntimeError as exc:
        raise DatafilterError(f"SentencePiece training failed on {lines} lines: {exc}") from None


def _encode(
    text: Path, sp_model: Path, out: Path, batch: int = 10_000, total: int | None = None
) -> None:
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(sp_model))
    with (
        text.open(encoding="utf-8") as src,
        out.open("w", encoding="utf-8") as dst,
        progress_bar(total, desc="encoding", unit="lines") as bar,
    ):
        chunk: list[str] = []
        for line in src:
            chunk.append(line.rstrip("\n"))
            if len(chunk) >= batch:
                dst.writelines(" ".join(p) + "\n" for p in sp.encode(chunk, out_type=str))
                bar.update(len(chunk))
                chunk = []
        if chunk:
            dst.writelines(" ".join(p) + "\n" for p in sp.encode(chunk, out_type=str))
            bar.update(len(chunk))


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _vocab_size(sp_model: Path) -> int:
    import sentencepiece as spm

    return spm.SentencePieceProcessor(model_file=str(sp_model)).get_piece_size()


def _run_lmplz(lmplz: Path, text: Path, arpa: Path, work: Path, opts: KenlmTrainingOptions) -> None:
    cmd = [
        str(lmplz),
        "-o",
        str(opts.order),
        "-S",
        opts.memory,
        "-T",
        str(work),
        "--discount_fallback",
        "--text",
        str(text),
        "--arpa",
        str(arpa),
    ]
    if opts.prune:
        cmd += ["--prune", *map(str, opts.prune)]
    run_tool(cmd, "lmplz")


def run_tool(cmd: list[str], what: str) -> None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise MissingDependencyError(
            f"{what} not found ({exc}); run: datafilter setup-kenlm"
        ) from None
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise DatafilterError(f"{what} failed with exit code {proc.returncode}:\n{tail}")
