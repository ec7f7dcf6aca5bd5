"""Find or build KenLM's estimation tools (``lmplz`` and ``build_binary``).

The tools are not packaged on PyPI or Debian, but the PyPI ``kenlm`` sdist carries their
full C++ source. ``build_kenlm_tools`` downloads that sdist, builds the two targets with
cmake and caches them under ``tools_cache_dir()``.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from datafilter.errors import DatafilterError, MissingDependencyError

KENLM_SDIST_VERSION = "0.3.0"
"""Version of the PyPI ``kenlm`` sdist the tools are built from."""

ENV_LMPLZ = "DATAFILTER_LMPLZ"
ENV_BUILD_BINARY = "DATAFILTER_BUILD_BINARY"
ENV_SDIST = "DATAFILTER_KENLM_SDIST"
ENV_CACHE_DIR = "DATAFILTER_CACHE_DIR"

INSTALL_SCRIPT = "scripts/install_system_deps.sh"
LOG_NAME = "kenlm-build.log"
_LOG_TAIL_LINES = 30

# Where to look for headers and libraries (Debian multiarch dirs are globbed).
_INCLUDE_DIRS: tuple[str, ...] = ("/usr/include", "/usr/local/include", "/opt/homebrew/include")
_LIB_DIRS: tuple[str, ...] = (
    "/usr/lib",
    "/usr/lib/*-linux-gnu",
    "/usr/lib64",
    "/usr/local/lib",
    "/opt/homebrew/lib",
)

# (what, header relative to an include dir, library stem or None, Debian package)
_HEADER_PREREQS: tuple[tuple[str, str, str | None, str], ...] = (
    (
        "boost program_options headers",
        "boost/program_options.hpp",
        "boost_program_options",
        "libboost-program-options-dev",
    ),
    ("boost system headers", "boost/system/error_code.hpp", "boost_system", "libboost-system-dev"),
    ("boost thread headers", "boost/thread.hpp", "boost_thread", "libboost-thread-dev"),
    (
        "boost unit_test_framework headers",
        "boost/test/unit_test.hpp",
        "boost_unit_test_framework",
        "libboost-test-dev",
    ),
    ("zlib headers", "zlib.h", None, "zlib1g-dev"),
)


@dataclass(frozen=True)
class KenlmTools:
    """Paths to the two KenLM executables."""

    lmplz: Path
    build_binary: Path


def tools_cache_dir() -> Path:
    """Folder holding the cached ``lmplz`` and ``build_binary`` for the pinned sdist version."""
    base = os.environ.get(ENV_CACHE_DIR)
    if base:
        root = Path(base).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "datafilter"
    return root / "kenlm-tools" / KENLM_SDIST_VERSION / "bin"


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _tools_in(folder: Path) -> KenlmTools | None:
    tools = KenlmTools(lmplz=folder / "lmplz", build_binary=folder / "build_binary")
    if _is_executable(tools.lmplz) and _is_executable(tools.build_binary):
        return tools
    return None


def find_kenlm_tools() -> KenlmTools | None:
    """Return the tools from the env vars, the cache folder or ``PATH``; None if not found.

    When ``DATAFILTER_LMPLZ`` or ``DATAFILTER_BUILD_BINARY`` is set, both must be set and
    name executables; otherwise this raises ``MissingDependencyError`` rather than silently
    falling back to other copies.
    """
    env_lmplz = os.environ.get(ENV_LMPLZ)
    env_build = os.environ.get(ENV_BUILD_BINARY)
    if env_lmplz or env_build:
        if not (env_lmplz and env_build):
            raise MissingDependencyError(f"set both {ENV_LMPLZ} and {ENV_BUILD_BINARY}, or neither")
        tools = KenlmTools(Path(env_lmplz).expanduser(), Path(env_build).expanduser())
        for var, path in ((ENV_LMPLZ, tools.lmplz), (ENV_BUILD_BINARY, tools.build_binary)):
            if not _is_executable(path):
                raise MissingDependencyError(f"{var}={path} is not an executable file")
        return tools

    cached = _tools_in(tools_cache_dir())
    if cached is not None:
        return cached

    which_lmplz = shutil.which("lmplz")
    which_build = shutil.which("build_binary")
    if which_lmplz and which_build:
        return KenlmTools(Path(which_lmplz), Path(which_build))
    return None


def _find_file(dirs: Sequence[str], patterns: Sequence[str]) -> bool:
    for pattern_dir in dirs:
        for folder in glob.glob(pattern_dir):
            for pattern in patterns:
                if glob.glob(os.path.join(glob.escape(folder), pattern)):
                    return True
    return False


def check_build_prerequisites() -> list[str]:
    """List what is missing to build the tools, each item naming the Debian package."""
    missing: list[str] = []
    if shutil.which("cmake") is None:
        missing.append("cmake: apt-get install cmake")
    if not any(shutil.which(cxx) for cxx in ("c++", "g++", "clang++")):
        missing.append("a C++ compiler: apt-get install g++")
    if shutil.which("make") is None and shutil.which("ninja") is None:
        missing.append("make: apt-get install make")
    for what, header, lib, package in _HEADER_PREREQS:
        found = _find_file(_INCLUDE_DIRS, [header])
        if found and lib is not None:
            found = _find_file(_LIB_DIRS, [f"lib{lib}*.so", f"lib{lib}*.a", f"lib{lib}*.dylib"])
        if not found:
            missing.append(f"{what}: apt-get install {package}")
    return missing


def _log_tail(log_path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def run_logged(cmd: list[str], log_path: Path, *, cwd: Path | None = None) -> bool:
    """Run ``cmd`` with its output appended to ``log_path``; True on success."""
    with log_path.open("a") as fh:
        fh.write(f"\n$ {' '.join(cmd)}\n")
        fh.flush()
        try:
            proc = subprocess.run(cmd, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT, check=False)
        except OSError as exc:
            fh.write(f"failed to start: {exc}\n")
            return False
    return proc.returncode == 0


def failure_message(message: str, log_path: Path) -> str:
    return f"{message}; last lines of {log_path}:\n{_log_tail(log_path)}\n(full log: {log_path})"


def get_sdist(download_dir: Path, log_path: Path, log: Callable[[str], None]) -> Path:
    given = os.environ.get(ENV_SDIST)
    if given:
        sdist = Path(given).expanduser()
        if not sdist.is_file():
            raise MissingDependencyError(f"{ENV_SDIST}={sdist} is not a file")
        log(f"Using kenlm sdist {sdist}")
        return sdist
    log(f"Downloading kenlm=={KENLM_SDIST_VERSION} source from PyPI ...")
    download_dir.mkdir(parents=True, exist_ok=True)
    # `--no-binary kenlm` (not :all:) so pip may use wheels for the sdist's build requirements.
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", "kenlm",
        "-d", str(download_dir), f"kenlm=={KENLM_SDIST_VERSION}",
    ]  # fmt: skip
    ok = run_logged(cmd, log_path)
    found = sorted(download_dir.glob("kenlm-*.tar.gz"))
    if not ok or not found:
        raise MissingDependencyError(
            failure_message(
                f"could not download the kenlm=={KENLM_SDIST_VERSION} sdist; download it "
                f"yourself and set {ENV_SDIST} to the .tar.gz",
                log_path,
            )
        )
    return found[0]


def extract_sdist(sdist: Path, dest: Path) -> Path:
    with tarfile.open(sdist) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, filter="data")
        else:  # Python < 3.11.4
            tar.extractall(dest)
    roots = [p for p in dest.iterdir() if (p / "CMakeLists.txt").is_file()]
    if len(roots) != 1:
        raise DatafilterError(f"{sdist} does not look like the kenlm sdist (no CMakeLists.txt)")
    return roots[0]


def _install(src: Path, dest: Path) -> None:
    """Copy ``src`` to ``dest`` atomically (temporary name in the same folder, then replace)."""
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    try:
        shutil.copy2(src, tmp)
        tmp.chmod(0o755)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def build_kenlm_tools(
    cache_dir: Path | None = None,
    *,
    jobs: int | None = None,
    log: Callable[[str], None] = print,
) -> KenlmTools:
    """Build ``lmplz`` and ``build_binary`` from the kenlm sdist into ``cache_dir``."""
    missing = check_build_prerequisites()
    if missing:
        items = "\n".join(f"  - {item}" for item in missing)
        raise MissingDependencyError(
            "cannot build KenLM's lmplz/build_binary; missing:\n"
            f"{items}\nRun {INSTALL_SCRIPT} (as root or with sudo) to install them."
        )
    cache_dir = Path(cache_dir) if cache_dir is not None else tools_cache_dir()
    cache_dir.mkdir(parents=True, exist_ok=True)
    log_path = cache_dir / LOG_NAME
    log_path.write_text(f"datafilter: building KenLM tools from kenlm=={KENLM_SDIST_VERSION}\n")
    jobs = jobs if jobs is not None else 2
    started = time.monotonic()

    with tempfile.TemporaryDirectory(prefix="datafilter-kenlm-") as tmp_name:
        tmp = Path(tmp_name)
        sdist = get_sdist(tmp / "download", log_path, log)
        src = extract_sdist(sdist, tmp / "src")
        build = tmp / "build"
        log(f"Configuring with cmake (log: {log_path}) ...")
        configure = [
            "cmake", "-S", str(src), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
            "-DKENLM_MAX_ORDER=6", "-DCOMPILE_TESTS=OFF", "-DENABLE_PYTHON=OFF",
        ]  # fmt: skip
        if not run_logged(configure, log_path):
            raise MissingDependencyError(
                failure_message(f"cmake configure failed (try {INSTALL_SCRIPT})", log_path)
            )
        log(f"Compiling lmplz and build_binary with {jobs} jobs (takes a few minutes) ...")
        compile_cmd = [
            "cmake", "--build", str(build), "--target", "lmplz", "build_binary",
            "--parallel", str(jobs),
        ]  # fmt: skip
        if not run_logged(compile_cmd, log_path):
            raise DatafilterError(failure_message("building KenLM's tools failed", log_path))
        for name in ("lmplz", "build_binary"):
            built = build / "bin" / name
            if not _is_executable(built):
                problem = f"the build did not produce {built}"
                raise DatafilterError(failure_message(problem, log_path))
            _install(built, cache_dir / name)

    tools = _tools_in(cache_dir)
    if tools is None:  # pragma: no cover - copy just succeeded
        raise DatafilterError(f"KenLM tools missing from {cache_dir} right after installing")
    log(f"Built KenLM tools in {time.monotonic() - started:.0f} s: {cache_dir}")
    return tools


def ensure_kenlm_tools(*, build: bool = True, log: Callable[[str], None] = print) -> KenlmTools:
    """Return the tools, building them into the cache when missing and ``build`` is true."""
    tools = find_kenlm_tools()
    if tools is not None:
        return tools
    if build:
        return build_kenlm_tools(log=log)
    raise MissingDependencyError(
        "KenLM's lmplz/build_binary not found; run `datafilter setup-kenlm` to build them "
        f"(needs the packages from {INSTALL_SCRIPT}), or set {ENV_LMPLZ} and "
        f"{ENV_BUILD_BINARY} to existing executables"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Find or build the tools and print their paths."""
    parser = argparse.ArgumentParser(
        prog="python -m datafilter.kenlm.tools", description=main.__doc__
    )
    parser.add_argument("--rebuild", action="store_true", help="build even if tools are found")
    parser.add_argument("--no-build", action="store_true", help="only look, never build")
    parser.add_argument("--jobs", type=int, default=None, help="parallel compile jobs (2)")
    args = parser.parse_args(argv)
    try:
        if args.rebuild:
            tools = build_kenlm_tools(jobs=args.jobs)
        elif args.no_build:
            tools = ensure_kenlm_tools(build=False)
        else:
            tools = find_kenlm_tools() or build_kenlm_tools(jobs=args.jobs)
    except DatafilterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"lmplz: {tools.lmplz}")
    print(f"build_binary: {tools.build_binary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
