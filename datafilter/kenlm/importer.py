"""Import a KenLM model (binary or ARPA) and its SentencePiece model as a datafilter model folder.

Public CCNet-style models come as a KenLM file plus a SentencePiece model per language, with no
record of how their training text was normalised: the user names the recipe (``ccnet`` by
default). Before writing anything, the pair is checked:

- vocabulary: the KenLM model was estimated on SentencePiece pieces, so (nearly) every word of
  its vocabulary is a piece of the SentencePiece model, and most pieces are in its vocabulary;
- recipe: the pieces of a SentencePiece model trained on text normalised by the recipe are
  (nearly all) left as they are by the recipe: many pieces with, e.g., capitals or digits 1-9
  say that the recipe named is not the one the model was trained with;
- smoke score: a few lines (``--sample``, or lines made of the model's own frequent pieces),
  normalised and encoded as the scorer does, score finite and are not mostly in pieces that
  the KenLM model does not know.

A failed check raises a ModelError that lists every failed check with its figures.
"""

from __future__ import annotations

import math
import os
import shutil
import struct
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from datafilter.errors import ModelError
from datafilter.io.atomic import write_json
from datafilter.kenlm.model import RECIPE_FILE, KenlmRecipe
from datafilter.kenlm.normalize import NormalizationRecipe, Normalizer

# Thresholds of the fit checks (fractions).
# of the KenLM words (but <unk>, <s>, </s>) that are pieces or made of unknown characters
MIN_KENLM_WORDS_IN_SP = 0.95
MIN_PIECES_IN_KENLM = 0.8  # of the SentencePiece pieces that the KenLM model knows
MAX_PIECES_CHANGED_BY_RECIPE = 0.1  # of the pieces that the recipe would change
MAX_SMOKE_UNKNOWN = 0.5  # of the smoke text's characters in pieces the KenLM model lacks
SMOKE_LINES = 20
SPECIAL_WORDS = frozenset({"<unk>", "<s>", "</s>"})

# KenLM's binary header (lm/binary_format.cc): the magic string padded to 56 bytes, test
# values to byte 88, then order (uint8), probing multiplier (float32), model type (int32),
# has-vocabulary flag (bool) and search version (uint32) with C padding, then the n-gram counts
# (uint64 each) from byte 108. The vocabulary strings, each NUL-terminated and <unk> first, end
# the file when the flag is set.
_BINARY_MAGIC = b"mmap lm http://kheafield.com/code format version 5\n\0"
_ORDER_AT, _PARAMS_AT, _COUNTS_AT = 88, 92, 108
_TRIE_TYPES = {2, 3, 4, 5}  # trie, with quantisation and/or array-compressed pointers


@dataclass(frozen=True)
class KenlmFile:
    """What the file says about itself: format, order, n-gram counts, vocabulary if stored."""

    path: Path
    kind: Literal["binary", "arpa"]
    order: int
    counts: tuple[int, ...]
    binary_type: Literal["probing", "trie"] | None
    vocabulary: list[str] | None


class FitReport(BaseModel):
    """The figures of the fit checks and the problems found (none: the pair fits)."""

    kenlm_words: int | None  # None: the binary does not store its vocabulary strings
    sentencepiece_pieces: int  # normal pieces (not control, unknown, unused or byte)
    shared: int  # in both
    # KenLM words that are pieces or made of characters outside the SentencePiece alphabet
    kenlm_words_in_sentencepiece: float | None
    kenlm_words_outside_alphabet: int
    unexplained_examples: list[str]  # KenLM words that are neither
    pieces_in_kenlm: float
    pieces_changed_by_recipe: float
    changed_examples: list[str]
    smoke_source: str
    smoke_lines: int  # normalised, non-empty
    smoke_pieces: int
    smoke_unknown: float  # share of the characters in pieces the KenLM model does not know
    smoke_log10_per_piece: float | None  # log10 probability per piece, </s> counted
    problems: list[str]


def read_kenlm_file(path: str | Path) -> KenlmFile:
    """Header and vocabulary of a KenLM binary or ARPA file; a ModelError if it is neither."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelError(f"KenLM model {path} does not exist")
    with path.open("rb") as handle:
        head = handle.read(_COUNTS_AT)
    if head.startswith(_BINARY_MAGIC):
        return _read_binary(path, head)
    if head.startswith(b"\x1f\x8b"):
        raise ModelError(f"{path}: a gzip file; decompress it first (gunzip)")
    if head.startswith(b"mmap lm "):
        raise ModelError(
            f"{path}: a KenLM binary of another format version or an unfinished build "
            "(rebuild it from the ARPA file)"
        )
    return _read_arpa(path)


def _read_binary(path: Path, head: bytes) -> KenlmFile:
    order = head[_ORDER_AT]
    _multiplier, model_type, has_vocab, _search = struct.unpack_from("<fiBxxxI", head, _PARAMS_AT)
    with path.open("rb") as handle:
        handle.seek(_COUNTS_AT)
        counts = struct.unpack(f"<{order}Q", handle.read(8 * order))
        vocabulary = _binary_vocabulary(handle, counts[0]) if has_vocab else None
    return KenlmFile(
        path=path,
        kind="binary",
        order=order,
        counts=counts,
        binary_type="trie" if model_type in _TRIE_TYPES else "probing",
        vocabulary=vocabulary,
    )


def _binary_vocabulary(handle: Any, size: int) -> list[str] | None:
    """The ``size`` NUL-terminated words that end the file; None unless they check out."""
    end = handle.seek(0, os.SEEK_END)
    tail = b""
    block = max(1 << 16, 16 * size)
    while tail.count(b"\0") < size + 1 and len(tail) < end:
        start = max(0, end - len(tail) - block)
        handle.seek(start)
        tail = handle.read(end - len(tail) - start) + tail
    parts = tail.split(b"\0")
    if parts[-1] != b"" or len(parts) < size + 1:
        return None
    words = parts[-size - 1 : -1]
    if not words[0].endswith(b"<unk>"):  # <unk> comes first; the model data runs up to it
        return None
    words[0] = b"<unk>"
    try:
        return [w.decode("utf-8") for w in words]
    except UnicodeDecodeError:
        return None


def _read_arpa(path: Path) -> KenlmFile:
    """Counts from the ``\\data\\`` section, words from the ``\\1-grams:`` section."""
    counts: list[int] = []
    words: list[str] = []
    section = ""
    with path.open(encoding="utf-8", errors="strict") as handle:
        try:
            for number, line in enumerate(handle, 1):
                line = line.strip()
                if line.startswith("\\"):
                    if section == "\\1-grams:":
                        break
                    section = line
                    continue
                if not line:
                    continue
                if section == "\\data\\" and line.startswith("ngram "):
                    counts.append(int(line.split("=", 1)[1]))
                elif section == "\\1-grams:":
                    fields = line.split("\t")
                    if len(fields) < 2:
                        raise ModelError(f"{path}, line {number}: not an ARPA unigram entry")
                    words.append(fields[1])
                elif number > 50 and not counts:
                    break
        except (UnicodeDecodeError, ValueError):
            raise ModelError(f"{path}: neither a KenLM binary nor an ARPA file") from None
    if not counts or not words:
        raise ModelError(f"{path}: neither a KenLM binary nor an ARPA file (no \\data\\ section)")
    if len(words) != counts[0]:
        raise ModelError(f"{path}: {len(words)} unigrams, but the header says {counts[0]}")
    return KenlmFile(path, "arpa", len(counts), tuple(counts), None, words)


def check_fit(
    model_file: Path,
    sentencepiece_file: Path,
    recipe: NormalizationRecipe,
    vocabulary: list[str] | None,
    sample: Iterable[str] | None = None,
) -> FitReport:
    """Compare the pair (see the module's docstring); ``problems`` lists what does not fit."""
    import kenlm
    import sentencepiece as spm

    try:
        model = kenlm.Model(str(model_file))
    except (OSError, RuntimeError) as exc:
        raise ModelError(f"{model_file}: kenlm cannot load it ({exc})") from None
    try:
        sp = spm.SentencePieceProcessor(model_file=str(sentencepiece_file))
    except (OSError, RuntimeError) as exc:
        raise ModelError(f"{sentencepiece_file}: not a SentencePiece model ({exc})") from None
    pieces = [
        sp.id_to_piece(i)
        for i in range(sp.get_piece_size())
        if not (sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i) or sp.is_byte(i))
    ]
    piece_set = set(pieces)
    if vocabulary is not None:
        words = set(vocabulary) - SPECIAL_WORDS
        shared = len(words & piece_set)
        # A character outside the SentencePiece model's alphabet is encoded as an unknown piece
        # whose text is that character: such words are in the KenLM vocabulary of a matching
        # pair too. Every character of the alphabet is a one-character piece.
        alphabet = {p for p in pieces if len(p) == 1} - {"\u2581"}
        foreign = sorted(w for w in words - piece_set if alphabet.isdisjoint(w))
        unexplained = sorted(words - piece_set - set(foreign))
        words_in_sp: float | None = 1 - len(unexplained) / len(words) if words else 0.0
    else:
        words, words_in_sp, foreign, unexplained = None, None, [], []
        shared = sum(1 for p in pieces if p in model)
    in_kenlm = shared / len(pieces) if pieces else 0.0
    changed = _pieces_changed_by_recipe(sp, pieces, recipe)
    changed_share = len(changed) / len(pieces) if pieces else 0.0

    if sample is None:
        lines, source = _lines_of_frequent_pieces(sp), "frequent SentencePiece pieces"
    else:
        lines, source = list(sample), "sample"
    normalizer = Normalizer(recipe)
    norm_lines = [n for line in lines for n in normalizer.lines(line)]
    n_pieces = n_chars = unknown_chars = 0
    log10 = 0.0
    for encoded in sp.encode(norm_lines, out_type=str):
        scores = list(model.full_scores(" ".join(encoded), bos=True, eos=True))
        n_pieces += len(encoded)
        for piece, (_, _, oov) in zip(encoded, scores, strict=False):  # the last is </s>
            chars = len(piece.replace("\u2581", ""))
            n_chars += chars
            unknown_chars += chars if oov else 0
        log10 += sum(p for p, _, _ in scores)
    unknown_share = unknown_chars / n_chars if n_chars else 1.0
    per_piece = log10 / (n_pieces + len(norm_lines)) if norm_lines else None

    problems = []
    if not pieces:
        problems.append("the SentencePiece model has no normal pieces")
    if words_in_sp is not None and words_in_sp < MIN_KENLM_WORDS_IN_SP:
        problems.append(
            f"only {words_in_sp:.1%} of the KenLM vocabulary ({len(words or ())} words) are "
            f"pieces of the SentencePiece model or characters outside its alphabet (at least "
            f"{MIN_KENLM_WORDS_IN_SP:.0%} expected; e.g. {', '.join(map(repr, unexplained[:5]))}):"
            " the KenLM model was trained on another tokenisation"
        )
    if in_kenlm < MIN_PIECES_IN_KENLM:
        problems.append(
            f"only {in_kenlm:.1%} of the {len(pieces)} SentencePiece pieces are in the KenLM "
            f"vocabulary (at least {MIN_PIECES_IN_KENLM:.0%} expected)"
        )
    if changed_share > MAX_PIECES_CHANGED_BY_RECIPE:
        problems.append(
            f"the recipe {recipe.name or 'given'} changes {changed_share:.1%} of the pieces (at "
            f"most {MAX_PIECES_CHANGED_BY_RECIPE:.0%} expected; e.g. "
            f"{', '.join(map(repr, changed[:5]))}): the model was trained with another "
            "normalisation; name it with --recipe or --norm"
        )
    if not norm_lines:
        problems.append(f"the smoke text ({source}) is empty after normalisation")
    elif per_piece is None or not math.isfinite(per_piece):
        problems.append(f"the smoke score on {source} is not finite ({per_piece})")
    if norm_lines and unknown_share > MAX_SMOKE_UNKNOWN:
        problems.append(
            f"{unknown_share:.1%} of the smoke text ({source}) is in pieces unknown to the KenLM "
            f"model (at most {MAX_SMOKE_UNKNOWN:.0%} expected)"
        )
    return FitReport(
        kenlm_words=None if words is None else len(words),
        sentencepiece_pieces=len(pieces),
        shared=shared,
        kenlm_words_in_sentencepiece=words_in_sp,
        kenlm_words_outside_alphabet=len(foreign),
        unexplained_examples=unexplained[:10],
        pieces_in_kenlm=in_kenlm,
        pieces_changed_by_recipe=changed_share,
        changed_examples=changed[:10],
        smoke_source=source,
        smoke_lines=len(norm_lines),
        smoke_pieces=n_pieces,
        smoke_unknown=unknown_share,
        smoke_log10_per_piece=per_piece,
        problems=problems,
    )


def _pieces_changed_by_recipe(
    sp: Any, pieces: list[str], recipe: NormalizationRecipe
) -> list[str]:
    """Pieces whose text the recipe changes, compared after SentencePiece's own normaliser
    (which, e.g., recomposes what accent stripping leaves decomposed)."""
    normalizer = Normalizer(recipe)
    changed = []
    for piece in pieces:
        text = piece.replace("\u2581", "")
        if text and sp.normalize(normalizer.line(text)) != sp.normalize(text):
            changed.append(piece)
    return changed


def _lines_of_frequent_pieces(sp: Any, n_lines: int = SMOKE_LINES, length: int = 12) -> list[str]:
    """Deterministic lines of the model's most likely pieces: text in the model's own language
    and script, whatever that is."""
    ranked = sorted(
        (i for i in range(sp.get_piece_size()) if not (sp.is_control(i) or sp.is_unknown(i))),
        key=lambda i: -sp.get_score(i),
    )[: n_lines * length]
    return [sp.decode(ranked[k::n_lines][:length]) for k in range(n_lines)]


def import_kenlm(
    kenlm_file: str | Path,
    sentencepiece_file: str | Path,
    output: str | Path,
    *,
    recipe: str | NormalizationRecipe = "ccnet",
    binary_type: Literal["probing", "trie"] = "probing",
    sample: str | Path | None = None,
    overwrite: bool = False,
    log: Callable[[str], None] = print,
) -> KenlmRecipe:
    """Write the model folder ``output`` (model.bin, tokenizer.model, recipe.json) from a KenLM
    binary or ARPA file and a SentencePiece model, after checking that they fit.

    ``recipe``: the normalisation the model's training text went through (a name or a recipe).
    ``binary_type``: the structure ``build_binary`` builds from an ARPA file. ``sample``: a text
    file (one line per line of text) for the smoke score.
    """
    from datafilter.kenlm.train import file_sha256, run_tool

    norm = NormalizationRecipe.model_validate(recipe)
    out = Path(output).expanduser().resolve()
    source = read_kenlm_file(kenlm_file)
    sp_file = Path(sentencepiece_file).expanduser()
    if not sp_file.is_file():
        raise ModelError(f"SentencePiece model {sp_file} does not exist")
    sample_lines = _read_sample(Path(sample).expanduser()) if sample is not None else None
    if out.exists() and not overwrite:
        raise ModelError(f"{out} exists; remove it or pass --overwrite")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.tmp-", dir=out.parent) as tmp_name:
        work = Path(tmp_name)
        final = work / "final"
        final.mkdir()
        if source.kind == "arpa":
            from datafilter.kenlm.tools import ensure_kenlm_tools

            tools = ensure_kenlm_tools(log=log)
            log(f"converting {source.path} to a {binary_type} binary with build_binary")
            run_tool(
                [str(tools.build_binary), binary_type, str(source.path), str(final / "model.bin")],
                "build_binary",
            )
            built = read_kenlm_file(final / "model.bin")
            vocabulary, kind = source.vocabulary, binary_type
            if built.vocabulary is not None and set(built.vocabulary) != set(vocabulary or ()):
                raise ModelError(f"{source.path}: build_binary's vocabulary differs from the ARPA")
        else:
            shutil.copyfile(source.path, final / "model.bin")
            vocabulary, kind = source.vocabulary, source.binary_type or "probing"
        shutil.copyfile(sp_file, final / "tokenizer.model")
        report = check_fit(
            final / "model.bin", final / "tokenizer.model", norm, vocabulary, sample_lines
        )
        if report.problems:
            raise ModelError(
                f"{source.path} and {sp_file} do not fit: " + "; ".join(report.problems)
            )
        log(
            f"fit: {report.pieces_in_kenlm:.1%} of {report.sentencepiece_pieces} pieces in the "
            f"KenLM vocabulary; smoke score {report.smoke_log10_per_piece:.3f} log10 per piece, "
            f"{report.smoke_unknown:.1%} unknown"
        )
        result = KenlmRecipe(
            order=source.order,
            vocab_size=_piece_count(final / "tokenizer.model"),
            binary_type=kind,
            normalization=norm,
            checksums={n: file_sha256(final / n) for n in ("model.bin", "tokenizer.model")},
            imported={
                "kenlm": str(source.path.resolve()),
                "kenlm_format": source.kind,
                "ngram_counts": list(source.counts),
                "sentencepiece": str(sp_file.resolve()),
                "recipe": norm.name,
                "fit": report.model_dump(),
            },
        )
        write_json(final / RECIPE_FILE, result.model_dump(mode="json"))
        if out.exists():
            shutil.rmtree(out)
        os.replace(final, out)
    log(f"wrote KenLM model folder {out}")
    return result


def _read_sample(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path}: cannot read the sample text ({exc})") from None


def _piece_count(sp_model: Path) -> int:
    import sentencepiece as spm

    return spm.SentencePieceProcessor(model_file=str(sp_model)).get_piece_size()
