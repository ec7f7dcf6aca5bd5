"""The Debian packages a multi-stage image's runtime stage needs for the files it copies.

The build stage compiles KenLM's tools, the ``kenlm`` module and the native line scorer against
libraries that come with the build tools' ``-dev`` packages (Boost, zlib, ...). ``scan`` runs
``ldd`` on every ELF file under the given folders and records, for each library found outside
them, the Debian package that owns it, plus the libraries ``ldd`` could not find even there
(for example the NVIDIA driver's ``libcuda.so.1``, which the host brings at run time).
``install``, in the runtime stage, installs those packages (only the shared libraries, none of
the ``-dev`` packages or compilers) and checks again with ``ldd`` that no file misses a library
that the build stage had found.

Standard library only: it runs on the base image's own ``python3``.

    python3 docker/runtime_libs.py scan --out runtime-libs.json .venv cache
    python3 docker/runtime_libs.py install runtime-libs.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

_LDD_LINE = re.compile(r"^\s*(\S+)\s+=>\s+(.*?)\s*(?:\(0x[0-9a-f]+\))?\s*$")
_APT_ENV = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}


def elf_files(roots: Iterable[Path]) -> Iterator[Path]:
    """Regular files (not links) under ``roots`` that start with the ELF magic number."""
    for root in roots:
        for folder, _dirs, names in os.walk(root):
            for name in names:
                path = Path(folder, name)
                if path.is_symlink() or not path.is_file():
                    continue
                try:
                    with path.open("rb") as handle:
                        if handle.read(4) == b"\x7fELF":
                            yield path
                except OSError:
                    continue


def ldd(path: Path) -> dict[str, str | None]:
    """Library name -> resolved path (None: not found); empty for a static file."""
    proc = subprocess.run(["ldd", str(path)], capture_output=True, text=True)
    libs: dict[str, str | None] = {}
    if proc.returncode != 0:  # "not a dynamic executable", statically linked
        return libs
    for line in proc.stdout.splitlines():
        match = _LDD_LINE.match(line)
        if match:
            name, target = match.groups()
            libs[name] = None if target == "not found" else (target or None)
    return libs


def link_map(roots: list[Path]) -> dict[Path, dict[str, str | None]]:
    """``ldd`` of every ELF file under ``roots`` (several at once: the GPU venv has thousands)."""
    files = sorted(elf_files(roots))
    with ThreadPoolExecutor(max_workers=8) as pool:
        return dict(zip(files, pool.map(ldd, files), strict=True))


def _inside(path: str, roots: list[Path]) -> bool:
    resolved = Path(path).resolve()
    return any(resolved.is_relative_to(root.resolve()) for root in roots)


def _candidates(path: str) -> list[str]:
    """The names dpkg may know a library by (merged /usr: /lib/x is /usr/lib/x)."""
    names = {path, os.path.realpath(path)}
    for name in list(names):
        if name.startswith("/usr/"):
            names.add(name[len("/usr") :])
        else:
            names.add("/usr" + name)
    return sorted(names)


def owning_packages(paths: Iterable[str]) -> dict[str, str]:
    """Library path -> owning Debian package; paths no package owns are left out."""
    paths = sorted(set(paths))
    queries = sorted({c for p in paths for c in _candidates(p)})
    if not queries:
        return {}
    proc = subprocess.run(["dpkg-query", "-S", *queries], capture_output=True, text=True)
    owner: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        if line.startswith("diversion "):
            continue
        packages, _, file = line.rpartition(": ")
        owner[file] = packages.split(",")[0].strip()
    native = subprocess.run(
        ["dpkg", "--print-architecture"], capture_output=True, text=True, check=True
    ).stdout.strip()
    found: dict[str, str] = {}
    for path in paths:
        hits = [owner[c] for c in _candidates(path) if c in owner]
        if hits:
            found[path] = hits[0].removesuffix(f":{native}")
    return found


def unresolved(links: dict[Path, dict[str, str | None]]) -> dict[str, list[str]]:
    """Library name -> the files that need it and for which ``ldd`` found none."""
    missing: dict[str, list[str]] = {}
    for path, libs in links.items():
        for name, target in libs.items():
            if target is None:
                missing.setdefault(name, []).append(str(path))
    return {name: sorted(files) for name, files in sorted(missing.items())}


def scan(roots: list[Path]) -> dict[str, object]:
    """What the runtime stage must install for the files under ``roots``."""
    links = link_map(roots)
    outside = {
        target
        for libs in links.values()
        for target in libs.values()
        if target is not None and not _inside(target, roots)
    }
    owners = owning_packages(outside)
    return {
        "roots": [str(root) for root in roots],
        "elf_files": len(links),
        "packages": sorted(set(owners.values())),
        "libraries": dict(sorted(owners.items())),
        "not_owned": sorted(outside - owners.keys()),  # the base image's own, e.g. /usr/local
        "unresolved": unresolved(links),
    }


def _installed(package: str) -> bool:
    proc = subprocess.run(
        ["dpkg-query", "-W", "-f=${db:Status-Abbrev}", package], capture_output=True, text=True
    )
    return proc.returncode == 0 and proc.stdout.startswith("ii")


def install(record: dict[str, object]) -> int:
    """Install the recorded packages, then check that nothing lacks a library it had."""
    missing = [p for p in record["packages"] if not _installed(p)]
    if missing:
        print(f"runtime_libs: installing {' '.join(missing)}", flush=True)
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=_APT_ENV)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
            check=True,
            env=_APT_ENV,
            stdout=subprocess.DEVNULL,
        )
        subprocess.run(["apt-get", "clean"], check=True)
        for lists in Path("/var/lib/apt/lists").glob("*"):
            if lists.is_file():
                lists.unlink()
    else:
        print("runtime_libs: every library package is in the base image already", flush=True)
    roots = [Path(root) for root in record["roots"]]
    now = unresolved(link_map(roots))
    before = record["unresolved"]
    lost = {n: files for n, files in now.items() if not set(files) <= set(before.get(n, []))}
    if lost:
        for name, files in lost.items():
            print(f"runtime_libs: {name} not found, needed by {files[0]}", file=sys.stderr)
        return 1
    print(f"runtime_libs: {record['elf_files']} ELF files checked, no library lost", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    scan_cmd = sub.add_parser("scan", help="record the packages that own the linked libraries")
    scan_cmd.add_argument("--out", type=Path, required=True, help="JSON record to write")
    scan_cmd.add_argument("roots", nargs="+", type=Path, help="folders to scan (absolute or not)")
    install_cmd = sub.add_parser("install", help="install a record's packages, then check")
    install_cmd.add_argument("record", type=Path)
    args = parser.parse_args(argv)
    if args.command == "scan":
        roots = [root.resolve() for root in args.roots]
        for root in roots:
            if not root.is_dir():
                parser.error(f"{root} is not a folder")
        record = scan(roots)
        args.out.write_text(json.dumps(record, indent=1) + "\n")
        print(
            f"runtime_libs: {record['elf_files']} ELF files link to packages "
            f"{' '.join(record['packages']) or '(none)'}; "
            f"{len(record['unresolved'])} libraries not found ({', '.join(record['unresolved'])})",
            flush=True,
        )
        return 0
    return install(json.loads(args.record.read_text()))


if __name__ == "__main__":
    sys.exit(main())
