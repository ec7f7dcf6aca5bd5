"""Build and load ``_kenlm_lines``, the native KenLM line scorer (``kenlm/kenlm_lines.cc``).

It is compiled with the C++ compiler against the kenlm sdist's sources (the same sdist the
estimation tools come from; no Boost, no cmake) and cached beside the tools, under a folder
named after the source's hash and the Python ABI, so a changed source or another Python gets
its own build. ``datafilter setup-kenlm`` builds it; without it the KenLM scorer uses a pure
Python path that gives the same numbers, slower.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import os
import shutil
import sysconfig
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path
from types import ModuleType

from datafilter.errors import DatafilterError, MissingDependencyError
from datafilter.kenlm.tools import (
    LOG_NAME,
    extract_sdist,
    failure_message,
    get_sdist,
    run_logged,
    tools_cache_dir,
)

MODULE = "_kenlm_lines"
SOURCE = Path(__file__).with_name("kenlm_lines.cc")
ENV_DISABLE = "DATAFILTER_KENLM_NATIVE"  # "0": always use the pure Python path
KENLM_MAX_ORDER = 6  # as the PyPI kenlm module is built
CXX_FLAGS = ["-O3", "-DNDEBUG", f"-DKENLM_MAX_ORDER={KENLM_MAX_ORDER}", "-std=c++20", "-fPIC"]


def _build_key() -> str:
    digest = hashlib.sha256(SOURCE.read_bytes())
    digest.update(" ".join(CXX_FLAGS).encode())
    return digest.hexdigest()[:12]


def native_dir() -> Path:
    """Where this source's build for this Python lives."""
    abi = (sysconfig.get_config_var("EXT_SUFFIX") or ".so").strip(".").replace(".", "-")
    return tools_cache_dir().parent / "native" / f"{_build_key()}-{abi}"


def native_path() -> Path:
    return native_dir() / f"{MODULE}{sysconfig.get_config_var('EXT_SUFFIX') or '.so'}"


@cache
def load_native() -> ModuleType | None:
    """The built module, or None when it is not built (or disabled by the environment)."""
    if os.environ.get(ENV_DISABLE, "1") == "0":
        return None
    path = native_path()
    if not path.is_file():
        return None
    loader = importlib.machinery.ExtensionFileLoader(MODULE, str(path))
    spec = importlib.util.spec_from_file_location(MODULE, path, loader=loader)
    if spec is None:  # pragma: no cover - the path is a file
        return None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def _sources(src: Path) -> list[Path]:
    """kenlm's library sources, as its setup.py picks them (no mains, no tests)."""
    files = [
        *src.glob("util/*.cc"),
        *src.glob("lm/*.cc"),
        *src.glob("util/double-conversion/*.cc"),
    ]
    return sorted(f for f in files if not f.name.endswith(("main.cc", "test.cc")))


def build_native(*, jobs: int | None = None, log: Callable[[str], None] = print) -> Path:
    """Compile ``_kenlm_lines`` into ``native_dir()``; returns the module's path."""
    compiler = next((c for c in ("c++", "g++", "clang++") if shutil.which(c)), None)
    if compiler is None:
        raise MissingDependencyError("building the native KenLM scorer needs a C++ compiler: "
                                     "apt-get install g++")  # fmt: skip
    include = sysconfig.get_paths()["include"]
    if not (Path(include) / "Python.h").is_file():
        raise MissingDependencyError(
            f"building the native KenLM scorer needs Python's headers ({include}/Python.h): "
            "apt-get install python3-dev"
        )
    out_dir = native_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    log_path = out_dir / LOG_NAME
    log_path.write_text(f"datafilter: building {MODULE} from {SOURCE}\n")
    jobs = jobs or min(4, os.cpu_count() or 1)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="datafilter-native-") as tmp_name:
        tmp = Path(tmp_name)
        src = extract_sdist(get_sdist(tmp / "download", log_path, log), tmp / "src")
        objects = tmp / "obj"
        objects.mkdir()
        log(f"Compiling the native KenLM scorer with {jobs} jobs (about a minute) ...")
        units = [*_sources(src), SOURCE]
        flags = [*CXX_FLAGS, f"-I{src}", f"-I{include}"]

        def compile_one(i: int) -> bool:
            cmd = [compiler, *flags, "-c", str(units[i]), "-o", str(objects / f"{i}.o")]
            return run_logged(cmd, log_path)

        with ThreadPoolExecutor(max_workers=jobs) as pool:
            results = list(pool.map(compile_one, range(len(units))))
        if not all(results):
            failed = [units[i].name for i, ok in enumerate(results) if not ok]
            problem = f"compiling {', '.join(failed)} failed"
            raise DatafilterError(failure_message(problem, log_path))
        target = native_path()
        staging = tmp / target.name
        link = [compiler, "-shared", "-o", str(staging), *map(str, sorted(objects.glob("*.o")))]
        if not run_logged(link, log_path):
            raise DatafilterError(failure_message(f"linking {MODULE} failed", log_path))
        partial = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        shutil.copy2(staging, partial)
        os.replace(partial, target)
    load_native.cache_clear()
    if load_native() is None:
        raise DatafilterError(f"{target} was built but does not load")
    log(f"Built the native KenLM scorer in {time.monotonic() - started:.0f} s: {target}")
    return target


def ensure_native(*, log: Callable[[str], None] = print) -> Path:
    """The module's path, building it first when it is missing."""
    path = native_path()
    return path if path.is_file() else build_native(log=log)
