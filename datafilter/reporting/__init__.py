"""``datafilter report``: one self-contained HTML page about a run and its selection.

The page shows the score distributions with the thresholds drawn, what each group lost, the
documents at each decile and around each threshold, and the run's configuration. Plots need
matplotlib (``pip install 'datafilter[report]'``); nothing on the page needs the network.

(This package is ``datafilter.reporting``, not ``datafilter.report``, so that importing it
never shadows the public function ``datafilter.report``, which calls :func:`write_report`.)
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from datafilter.errors import ConfigError
from datafilter.io.atomic import write_bytes
from datafilter.io.layout import RunLayout
from datafilter.io.storage import is_remote

log = logging.getLogger(__name__)

REPORT_NAME = "report.html"


class ReportOptions(BaseModel):
    """``datafilter report``."""

    model_config = ConfigDict(extra="forbid")

    selection: str | None = Field(
        None, description="select output folder (default: the run's most recent)"
    )
    output: str | None = Field(
        None, description="HTML file to write (default: RUN_DIR/report.html)"
    )
    scorer_id: str | None = Field(None, description="scores to show (default: the run's only one)")


def write_report(run_dir: str | Path, opts: ReportOptions) -> dict[str, Any]:
    """Write the HTML report of ``run_dir`` (default ``RUN_DIR/report.html``), atomically.

    ``selection`` is a ``datafilter select`` output folder; by default the most recent one
    made from the run, and none if there is none (the page then shows the scores only).
    """
    from datafilter.reporting.data import collect
    from datafilter.reporting.plots import require_matplotlib
    from datafilter.reporting.render import render, sections

    require_matplotlib()  # fail early, with the extra to install, when matplotlib is missing
    selection, output, scorer_id = opts.selection, opts.output, opts.scorer_id
    layout = RunLayout.at(run_dir)
    if is_remote(layout.root) or (selection is not None and is_remote(selection)):
        raise ConfigError(
            "the report reads a local run folder: copy it from object storage first "
            "(e.g. aws s3 sync s3://bucket/run ./run)"
        )
    path = Path(output).expanduser().resolve() if output else layout.root / REPORT_NAME
    _refuse_foreign_target(path, layout)
    data = collect(layout.root, selection=selection, scorer_id=scorer_id)
    page = render(data).encode("utf-8")
    write_bytes(path, page)
    log.info(
        f"report: {sum(data.counts.values())} scored documents"
        + (f", selection {data.selection}" if data.selection else ", no selection")
        + f" -> {path}"
    )
    return {
        "report": str(path),
        "run": str(layout.root),
        "scorer_id": data.scorer_id,
        "selection": str(data.selection) if data.selection else None,
        "bytes": len(page),
        "sections": [name for _, name in sections(data)],
    }


def _refuse_foreign_target(path: Path, layout: RunLayout) -> None:
    """The page replaces only an earlier report, never an input or another file."""
    from datafilter.io.guard import input_places, place, refuse_overlaps
    from datafilter.io.record import require_record

    refuse_overlaps([place("report file", path)], input_places(require_record(layout).input))
    if path.is_dir():
        raise ConfigError(f"report file {path} is a folder; give a file name")
    if path.exists():
        with path.open("rb") as handle:
            head = handle.read(4096)
        if not (head.startswith(b"<!DOCTYPE html>") and b"<title>datafilter report" in head):
            raise ConfigError(
                f"report file {path} exists and is not a datafilter report; choose another name"
            )
