"""``datafilter init DIR``: copy the shipped DAGs, Ray job entrypoint and configs into a folder.

The wheel installs ``pipelines/`` and ``configs/`` as data files under
``<prefix>/share/datafilter/``; a source checkout (or an editable install) has them at the
repository root.
"""

from __future__ import annotations

import shutil
import sysconfig
from pathlib import Path
from typing import Any

from datafilter.errors import ConfigError

FOLDERS = ("pipelines", "configs")


def examples_root() -> Path:
    """The folder holding ``pipelines/`` and ``configs/``: the installed data files, else the
    source checkout this package was imported from."""
    candidates = [
        Path(sysconfig.get_path("data")) / "share" / "datafilter",
        Path(__file__).resolve().parents[1],
    ]
    for root in candidates:
        if all((root / folder).is_dir() for folder in FOLDERS):
            return root
    raise ConfigError(
        "the shipped pipelines/ and configs/ were not found (looked in "
        + ", ".join(map(str, candidates))
        + "); reinstall datafilter from its wheel"
    )


def write_examples(output: str | Path, overwrite: bool = False) -> dict[str, Any]:
    """Copy ``pipelines/*.py`` and ``configs/*.yaml`` into ``output``; refuses to replace a
    file that exists unless ``overwrite``. The files written."""
    root, out = examples_root(), Path(output).expanduser()
    files = [
        (src, out / folder / src.name)
        for folder, pattern in zip(FOLDERS, ("*.py", "*.yaml"), strict=True)
        for src in sorted((root / folder).glob(pattern))
    ]
    existing = [str(dst) for _, dst in files if dst.exists()]
    if existing and not overwrite:
        raise ConfigError(f"{', '.join(existing)} exist; pass --overwrite to replace them")
    for src, dst in files:
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    return {"output": str(out), "files": [str(dst.relative_to(out)) for _, dst in files]}
