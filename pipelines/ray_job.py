"""Ray job entrypoint: every stage of a ``datafilter run`` config, on the cluster the job runs in.

    ray job submit --address http://HEAD:8265 --working-dir . \\
        --runtime-env-json '{"excludes": [".git", ".venv", "bench/out", "demo-run"]}' \\
        -- python pipelines/ray_job.py --config configs/ray_job.yaml --data-root /shared/df

The config file is read from the job's working folder (the uploaded ``--working-dir``); the
relative paths inside it (input, run folder, output, model) are taken from ``--data-root``,
a folder that every node sees at the same path (shared storage). Ray sets ``RAY_ADDRESS`` for a
job's entrypoint, so the scoring and selection actors run on the cluster's nodes; outside a job,
pass ``--address``. Every node needs datafilter and its dependencies installed (the images in
``docker/``, or ``pip`` in the runtime environment).

Prints the run's result as one line of JSON on stdout (progress goes to stderr) and exits
non-zero when a stage fails, so the job's status is FAILED. Resubmitting the same job resumes:
finished shards are skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="a datafilter run config (YAML)")
    parser.add_argument(
        "--data-root",
        help="folder that relative paths in the config are taken from (default: the current one)",
    )
    parser.add_argument(
        "--address", help="Ray cluster to join (default: RAY_ADDRESS, which Ray sets for a job)"
    )
    parser.add_argument(
        "--progress",
        action="store_true",
        help="progress bars even off a terminal (default there: a progress line every 10 s)",
    )
    return parser.parse_args(argv)


def _cluster(ray: Any) -> dict[str, Any]:
    alive = [n for n in ray.nodes() if n["Alive"]]
    return {
        "nodes": len(alive),
        "cpus": sum(n["Resources"].get("CPU", 0) for n in alive),
        "gpus": sum(n["Resources"].get("GPU", 0) for n in alive),
    }


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    from datafilter.config import load_config
    from datafilter.errors import ConfigError, DatafilterError
    from datafilter.logs import setup_cli
    from datafilter.runtime import ensure_ray
    from datafilter.stages.run import run_config

    setup_cli()  # datafilter's lines (stages, progress) into the job's log

    try:
        cfg = load_config(args.config)
        address = args.address or os.environ.get("RAY_ADDRESS") or cfg.ray.address
        if not address:
            raise ConfigError(
                "no Ray cluster to join: submit this with `ray job submit`, or pass --address "
                "(use `datafilter run` to run on this machine alone)"
            )
        if args.data_root:
            root = Path(args.data_root).expanduser()
            if not root.is_dir():
                raise ConfigError(f"--data-root {root} is not a folder")
            os.chdir(root)
        cfg = cfg.model_copy(update={"ray": cfg.ray.model_copy(update={"address": address})})
        ray = ensure_ray(address)
        cluster = _cluster(ray)
        print(
            f"ray_job: {cluster['nodes']} node(s), {cluster['cpus']:g} CPUs, "
            f"{cluster['gpus']:g} GPUs; data root {Path.cwd()}",
            file=sys.stderr,
            flush=True,
        )
        if args.progress:
            from datafilter.progress import set_enabled

            set_enabled(True)
        result = run_config(cfg)
    except DatafilterError as exc:
        print(f"ray_job: error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    except OSError as exc:  # e.g. a full or read-only disk
        print(f"ray_job: error: {exc}", file=sys.stderr, flush=True)
        return 2
    print(json.dumps({"cluster": cluster, **result}, sort_keys=True, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
