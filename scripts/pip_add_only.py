"""``pip install`` that may add packages to the environment but never change an installed one.

setup.sh puts Apache Airflow into the project's .venv after the project's own dependencies
(its published constraints files are not reachable from here). This runs pip's dry run first
and refuses, naming each package, when the install would upgrade or downgrade anything that
is already installed; otherwise it installs.

    .venv/bin/python scripts/pip_add_only.py -e '.[airflow]'
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from importlib.metadata import distributions
from pathlib import Path


def canonicalize_name(name: str) -> str:
    """PEP 503's normalised project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_versions() -> dict[str, str]:
    return {canonicalize_name(d.metadata["Name"]): d.version for d in distributions()}


def planned_versions(pip_args: list[str]) -> dict[str, str]:
    """What ``pip install pip_args`` would install: name -> version (pip's dry-run report)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--dry-run", "-q", "--report", str(report)]
            + pip_args,
            check=True,
        )
        plan = json.loads(report.read_text())["install"]
    return {canonicalize_name(i["metadata"]["name"]): i["metadata"]["version"] for i in plan}


def main(pip_args: list[str]) -> int:
    have = installed_versions()
    plan = planned_versions(pip_args)
    # The same version again is no change (pip reinstalls an editable project every time).
    changed = {n: (have[n], v) for n, v in plan.items() if n in have and have[n] != v}
    if changed:
        for name, (old, new) in sorted(changed.items()):
            print(f"pip_add_only.py: {' '.join(pip_args)} would change {name} {old} -> {new}",
                  file=sys.stderr)
        print("pip_add_only.py: refused; install it into a separate venv or pin versions",
              file=sys.stderr)
        return 1
    added = sorted(set(plan) - set(have))
    print(f"pip_add_only.py: adding {len(added)} packages, changing none", flush=True)
    return subprocess.run([sys.executable, "-m", "pip", "install", "-q", *pip_args]).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
