"""Offensive and clean fortunes from Debian's fortune packages, for ``harmful_eval.py``.

Debian ships offensive fortunes in separate packages (``fortunes-it-off``, ``fortunes-es-off``)
beside the clean ones (``fortunes-it``, ``fortunes-es``). This module reads them (it installs
nothing: see ``bench/README.md`` for the ``apt-get`` line) and returns deduplicated records.

- The files of a package come from ``dpkg-query -L``; a fortune file is a regular file with a
  strfile index (``<file>.dat``) beside it. Symbolic links (``/usr/share/games/fortunes/adams ->
  it/adams``, ``*.u8 -> *``) are followed once: each real file is read once.
- The ``.dat`` header (big-endian: version, numstr, longlen, shortlen, flags, then the delimiter
  byte) says whether the file is ROT13-encoded (``flags & STR_ROTATED``) and which character
  separates records (a line holding only that character).
- ``fortunes-es`` carries its own copy of the offensive files (``es/off/``): files with an ``off``
  folder in their path are not clean, and any clean record whose text also appears in the
  offensive set of the same language is dropped too (and counted).
- Records are deduplicated within each class by their text with whitespace collapsed and case
  folded; the first occurrence (files in sorted path order) is kept.
"""

from __future__ import annotations

import codecs
import hashlib
import re
import shutil
import struct
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

STR_ROTATED = 0x4
HEADER = struct.Struct(">5I")  # version, numstr, longlen, shortlen, flags; then the delimiter

OFFENSIVE_PACKAGES = {"it": "fortunes-it-off", "es": "fortunes-es-off"}
CLEAN_PACKAGES = {"it": "fortunes-it", "es": "fortunes-es"}
LANGUAGES = tuple(OFFENSIVE_PACKAGES)
APT_LINE = "apt-get install -y fortunes-it fortunes-it-off fortunes-es fortunes-es-off"


class MissingFortunes(RuntimeError):
    """The Debian fortune packages the evaluation reads are not installed."""


@dataclass(frozen=True)
class FortuneFile:
    path: Path
    package: str
    rotated: bool
    delimiter: str
    numstr: int


@dataclass(frozen=True)
class Record:
    id: str
    text: str
    lang: str
    label: str  # "offensive" or "clean"
    source: str  # package:relative path of the fortune file


@dataclass
class LanguageData:
    lang: str
    offensive: list[Record]
    clean: list[Record]
    report: dict[str, int | list[str]] = field(default_factory=dict)


def package_files(package: str) -> list[Path]:
    """The paths dpkg lists for an installed package."""
    if shutil.which("dpkg-query") is None:
        raise MissingFortunes(
            f"dpkg-query not found: this benchmark reads Debian packages ({APT_LINE})"
        )
    proc = subprocess.run(
        ["dpkg-query", "-L", package], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise MissingFortunes(f"Debian package {package} is not installed; as root run: {APT_LINE}")
    return [Path(line) for line in proc.stdout.splitlines() if line.startswith("/")]


def fortune_files(package: str) -> list[FortuneFile]:
    """The package's fortune files (each real file once), in sorted path order."""
    seen: dict[Path, FortuneFile] = {}
    for path in package_files(package):
        if path.suffix in (".dat", ".u8") or path.is_symlink() or not path.is_file():
            continue
        dat = path.with_name(path.name + ".dat")
        if not dat.is_file():
            continue
        real = path.resolve()
        if real in seen:
            continue
        raw = dat.resolve().read_bytes()
        if len(raw) < HEADER.size + 1:
            raise MissingFortunes(f"{dat}: truncated strfile header")
        _version, numstr, _longlen, _shortlen, flags = HEADER.unpack_from(raw)
        seen[real] = FortuneFile(
            path=path,
            package=package,
            rotated=bool(flags & STR_ROTATED),
            delimiter=chr(raw[HEADER.size]),
            numstr=numstr,
        )
    if not seen:
        raise MissingFortunes(f"no fortune files found in package {package}; run: {APT_LINE}")
    return sorted(seen.values(), key=lambda f: str(f.path))


def read_records(ff: FortuneFile) -> list[str]:
    """The file's records, ROT13-decoded when the strfile header says so, stripped, non-empty."""
    data = ff.path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    if ff.rotated:
        text = codecs.decode(text, "rot13")
    records, current = [], []
    for line in text.split("\n"):
        if line.rstrip("\r") == ff.delimiter:
            records.append("\n".join(current))
            current = []
        else:
            current.append(line.rstrip("\r"))
    records.append("\n".join(current))
    return [r.strip() for r in records if r.strip()]


def dedup_key(text: str) -> str:
    return " ".join(text.split()).casefold()


def _is_offensive_path(path: Path) -> bool:
    return "off" in path.parts


ATTRIBUTION = re.compile(r"^\s*(--|\u2014)\s*\S")


def strip_attribution(text: str) -> str:
    """The record without its attribution: from the last line starting with ``--`` (or an em
    dash) among its last three lines to the end; unchanged if nothing would be left."""
    lines = text.split("\n")
    for i in range(len(lines) - 1, max(len(lines) - 4, 0), -1):
        if ATTRIBUTION.match(lines[i]):
            body = "\n".join(lines[:i]).strip()
            return body or text
    return text


def load_language(lang: str, attributions: bool = False) -> LanguageData:
    """Deduplicated offensive and clean records of one language, with a report of what was
    dropped and why. Attribution lines (``-- Da it.hobby.umorismo``, ``-- Refrán.``) are cut off
    unless ``attributions``: they are shared by both classes in Italian (about 70 % of the
    records of each), and in Spanish three times as frequent in the clean records as in the
    offensive ones, so they measure the source more than the content."""
    report: dict[str, int | list[str]] = {}
    offensive: list[Record] = []
    keys: set[str] = set()
    off_files = fortune_files(OFFENSIVE_PACKAGES[lang])
    report["offensive_files"] = len(off_files)
    report["offensive_rotated_files"] = sum(f.rotated for f in off_files)
    counts: Counter[str] = Counter()
    for ff in off_files:
        for text in read_records(ff):
            counts["offensive_records_read"] += 1
            if not attributions and (stripped := strip_attribution(text)) != text:
                counts["offensive_attributions_cut"] += 1
                text = stripped
            key = dedup_key(text)
            if key in keys:
                counts["offensive_duplicates"] += 1
                continue
            keys.add(key)
            offensive.append(_record(lang, "offensive", ff, text))
    clean: list[Record] = []
    clean_keys: set[str] = set()
    clean_files = fortune_files(CLEAN_PACKAGES[lang])
    skipped = [str(f.path) for f in clean_files if _is_offensive_path(f.path)]
    report["clean_files"] = len(clean_files) - len(skipped)
    report["clean_rotated_files"] = sum(
        f.rotated for f in clean_files if not _is_offensive_path(f.path)
    )
    report["clean_files_skipped_as_offensive"] = skipped
    for ff in clean_files:
        if _is_offensive_path(ff.path):
            continue
        for text in read_records(ff):
            counts["clean_records_read"] += 1
            if not attributions and (stripped := strip_attribution(text)) != text:
                counts["clean_attributions_cut"] += 1
                text = stripped
            key = dedup_key(text)
            if key in keys:
                counts["clean_dropped_also_offensive"] += 1
                continue
            if key in clean_keys:
                counts["clean_duplicates"] += 1
                continue
            clean_keys.add(key)
            clean.append(_record(lang, "clean", ff, text))
    report.update(counts)
    report["offensive"] = len(offensive)
    report["clean"] = len(clean)
    return LanguageData(lang=lang, offensive=offensive, clean=clean, report=report)


def _record(lang: str, label: str, ff: FortuneFile, text: str) -> Record:
    digest = hashlib.sha1(f"{lang}\0{text}".encode()).hexdigest()[:12]
    return Record(
        id=f"{lang}-{label[:3]}-{digest}",
        text=text,
        lang=lang,
        label=label,
        source=f"{ff.package}:{ff.path.name}",
    )


def missing_packages(langs: tuple[str, ...] = LANGUAGES) -> list[str]:
    """The needed packages that dpkg does not report as installed."""
    wanted = [p for lang in langs for p in (OFFENSIVE_PACKAGES[lang], CLEAN_PACKAGES[lang])]
    if shutil.which("dpkg-query") is None:
        return wanted
    missing = []
    for package in wanted:
        proc = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", package],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0 or not proc.stdout.endswith(" installed"):
            missing.append(package)
    return missing


def load_all(
    langs: tuple[str, ...] = LANGUAGES, attributions: bool = False
) -> dict[str, LanguageData]:
    """Every language's data; one error naming every missing package."""
    missing = missing_packages(langs)
    if missing:
        raise MissingFortunes(
            f"missing Debian package(s): {', '.join(missing)}; as root run: {APT_LINE}"
        )
    return {lang: load_language(lang, attributions) for lang in langs}


def length_matched(
    pool: list[Record], like: list[Record], seed: int, bins: int = 10
) -> tuple[list[Record], float]:
    """Records of ``pool`` drawn with the length distribution of ``like``, as many as every
    length bin allows: the bins are the ``bins`` quantiles of the lengths (characters) of
    ``like``; each bin gets ``ratio`` times as many ``pool`` records as ``like`` has there, with
    the largest ratio every bin can supply. Returns the records (ordered by id) and the ratio.

    Length is the strongest confounder of a perplexity: without matching, a model of short
    jokes separates short texts from long ones as much as offensive from clean."""
    rng = np.random.default_rng(seed)
    edges = np.quantile([len(r.text) for r in like], np.linspace(0, 1, bins + 1))
    edges[0], edges[-1] = -np.inf, np.inf

    def bin_of(r: Record) -> int:
        return int(np.clip(np.searchsorted(edges, len(r.text), side="right") - 1, 0, bins - 1))

    wanted = np.bincount([bin_of(r) for r in like], minlength=bins)
    by_bin: list[list[Record]] = [[] for _ in range(bins)]
    for r in sorted(pool, key=lambda r: r.id):
        by_bin[bin_of(r)].append(r)
    ratio = min(len(by_bin[b]) / wanted[b] for b in range(bins) if wanted[b])
    chosen: list[Record] = []
    for b in range(bins):
        take = int(round(ratio * wanted[b]))
        picks = rng.choice(len(by_bin[b]), size=min(take, len(by_bin[b])), replace=False)
        chosen += [by_bin[b][i] for i in sorted(picks)]
    return sorted(chosen, key=lambda r: r.id), float(ratio)
