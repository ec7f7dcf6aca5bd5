"""The report as one self-contained HTML page: inline CSS, images as data URIs, no scripts.

Every value that comes from the data (document texts, ids, group names, options, paths) goes
through :func:`esc`; nothing on the page refers to anything outside it.
"""

from __future__ import annotations

import html
import json
import math
import re
from typing import Any

from datafilter import __version__
from datafilter.reporting import plots
from datafilter.reporting.data import ALL, NEAR_K, TEXT_CHARS, ReportData, SampledDoc

SECTIONS = (
    ("summary", "Summary"),
    ("distribution", "Score distribution"),
    ("groups", "Groups"),
    ("samples", "Sample documents"),
    ("thresholds", "Documents near the thresholds"),
    ("config", "Configuration"),
)

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")

CSS = """
:root { --fg: #1f2937; --muted: #6b7280; --line: #e5e7eb; --soft: #f3f4f6; --accent: #4c72b0;
  --good: #2f7d4a; --bad: #b42318; }
* { box-sizing: border-box; }
body { margin: 0; background: #eef0f3; color: var(--fg);
  font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
main { max-width: 1120px; margin: 0 auto; background: #fff; padding: 28px 36px 56px;
  min-height: 100vh; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 36px 0 10px; padding-bottom: 6px;
  border-bottom: 2px solid var(--line); }
h3 { font-size: 15px; margin: 22px 0 8px; }
p { margin: 6px 0 10px; }
.sub { color: var(--muted); margin: 0 0 14px; word-break: break-all; }
nav { display: flex; flex-wrap: wrap; gap: 6px 16px; padding: 8px 0 4px;
  border-top: 1px solid var(--line); border-bottom: 1px solid var(--line); margin-bottom: 8px; }
nav a { color: var(--accent); text-decoration: none; font-weight: 600; font-size: 13px; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: 10px;
  margin: 12px 0; }
.card { background: var(--soft); border-radius: 8px; padding: 10px 14px; }
.card .k { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .03em; }
.card .v { font-size: 22px; font-weight: 650; }
.card .d { color: var(--muted); font-size: 12px; }
.note { background: #fff8e6; border-left: 4px solid #e0a100; padding: 8px 12px; margin: 10px 0;
  border-radius: 4px; }
.caption { color: var(--muted); font-size: 13px; }
figure { margin: 10px 0 18px; }
figure img { display: block; width: 100%; height: auto; border: 1px solid var(--line);
  border-radius: 6px; }
figcaption { color: var(--muted); font-size: 13px; margin-top: 4px; }
table { border-collapse: collapse; width: 100%; margin: 8px 0 16px; font-size: 13px; }
th, td { border-bottom: 1px solid var(--line); padding: 5px 8px; text-align: left;
  vertical-align: top; }
th { background: var(--soft); font-weight: 600; white-space: nowrap; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr:nth-child(even) td { background: #fafafa; }
.doc { white-space: pre-wrap; word-break: break-word; font: 12px/1.45 ui-monospace,
  "DejaVu Sans Mono", Menlo, Consolas, monospace; max-height: 7.4em; overflow: hidden;
  background: var(--soft); border-radius: 4px; padding: 4px 8px; margin-top: 3px; }
.docid { color: var(--muted); font-size: 12px; word-break: break-all; }
.kept { color: var(--good); font-weight: 600; }
.dropped { color: var(--bad); font-weight: 600; }
details { margin: 8px 0; }
summary { cursor: pointer; font-weight: 600; color: var(--accent); }
pre.json { background: var(--soft); padding: 10px; border-radius: 6px; overflow-x: auto;
  font-size: 12px; max-height: 480px; }
dl.kv { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; margin: 8px 0 16px; }
dl.kv dt { color: var(--muted); }
dl.kv dd { margin: 0; word-break: break-word; }
code { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace;
  font-size: 12.5px; }
table.narrow { width: auto; min-width: 360px; }
footer { color: var(--muted); font-size: 12px; margin-top: 40px; }
"""


def esc(value: Any) -> str:
    """HTML-escaped text; control characters (which HTML cannot hold) become U+FFFD."""
    return html.escape(_CONTROL.sub("\ufffd", str(value)), quote=True)


def _n(v: Any) -> str:
    return f"{int(v):,}" if isinstance(v, int | float) else esc(v)


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}%"


def _v(v: Any) -> str:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return esc(v)
    return f"{v:,}" if isinstance(v, int) else f"{v:.5g}"


def _table(
    headers: list[str], rows: list[list[str]], numeric: set[int] = frozenset(), narrow=False
) -> str:
    """A table; cells are already HTML, headers are escaped here."""
    head = "".join(
        f"<th{' class=n' if i in numeric else ''}>{esc(h)}</th>" for i, h in enumerate(headers)
    )
    body = "".join(
        "<tr>"
        + "".join(f"<td{' class=n' if i in numeric else ''}>{c}</td>" for i, c in enumerate(r))
        + "</tr>"
        for r in rows
    )
    cls = ' class="narrow"' if narrow else ""
    return f"<table{cls}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _kv(pairs: list[tuple[str, str]]) -> str:
    return '<dl class="kv">' + "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in pairs) + "</dl>"


def _json(obj: Any) -> str:
    return esc(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, default=str))


def _compact(obj: Any) -> str:
    if isinstance(obj, dict):
        return ", ".join(f"{k}={_compact(v)}" for k, v in obj.items())
    if isinstance(obj, list):
        return "[" + ", ".join(_compact(v) for v in obj) + "]"
    if isinstance(obj, float):
        return f"{obj:.5g}"
    return str(obj)


def _group(g: str | None) -> str:
    return esc(plots.group_label(g)) if g is not None else "–"


# ----------------------------------------------------------------------------- sections


def render(data: ReportData) -> str:
    """The whole page."""
    m = data.manifest
    title = "datafilter report: " + "/".join(data.run_dir.parts[-2:])
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body><main>",
        f"<h1>{esc(title)}</h1>",
        _subtitle(data),
        "<nav>"
        + "".join(f'<a href="#{sid}">{esc(name)}</a>' for sid, name in sections(data))
        + "</nav>",
        _summary(data, m),
        _distribution(data),
        _harmful(data) if data.harmful else "",
        _groups(data, m),
        _samples(data),
        _near(data),
        _evaluation(data) if data.evaluation else "",
        _config(data, m),
        f"<footer>Written by datafilter {esc(__version__)} · <code>datafilter report "
        f"{esc(data.run_dir)}</code></footer>",
        "</main></body></html>",
    ]
    return "\n".join(parts) + "\n"


def _subtitle(data: ReportData) -> str:
    parts = [f"run <code>{esc(data.run_dir)}</code>", f"scores <code>{esc(data.scorer_id)}</code>"]
    if data.selection:
        parts.append(f"selection <code>{esc(data.selection)}</code>")
    else:
        parts.append("no selection")
    return '<p class="sub">' + " · ".join(parts) + "</p>"


HARMFUL_SECTION = ("harmful", "Harmful-content decision")
EVALUATION_SECTION = ("evaluation", "Which selection to keep (evaluate)")


def sections(data: ReportData) -> list[tuple[str, str]]:
    """The page's sections in order (the harmful one only for a harmful_outlier selection, the
    evaluation only when the run was evaluated)."""
    out = list(SECTIONS)
    if data.harmful:
        out = [*out[:2], HARMFUL_SECTION, *out[2:]]
    if data.evaluation:
        out = [*out[:-1], EVALUATION_SECTION, out[-1]]
    return out


def _section(sid: str, body: str) -> str:
    name = dict([*SECTIONS, HARMFUL_SECTION, EVALUATION_SECTION])[sid]
    return f'<section id="{sid}"><h2>{esc(name)}</h2>{body}</section>'


def _card(key: str, value: str, detail: str = "") -> str:
    d = f'<div class="d">{detail}</div>' if detail else ""
    return f'<div class="card"><div class="k">{esc(key)}</div><div class="v">{value}</div>{d}</div>'


def _selector_line(m: dict[str, Any]) -> str:
    sel = m.get("selector") or {}
    parts = [f"<b>{esc(sel.get('name', '?'))}</b>"]
    if sel.get("options"):
        parts.append(f"<code>{esc(_compact(sel['options']))}</code>")
    parts.append(
        f"thresholds per <b>{esc(m['group_by'])}</b>"
        if m.get("group_by")
        else "thresholds over all documents"
    )
    if m.get("report_by"):
        parts.append(f"counted by <b>{esc(m['report_by'])}</b>")
    parts.append(f"seed {esc(m.get('seed', 0))}")
    return " · ".join(parts)


def _summary(data: ReportData, m: dict[str, Any] | None) -> str:
    scored = sum(data.counts.values())
    out = []
    if m is None:
        out.append(
            _card("documents scored", _n(scored), f"{len(data.counts)} group(s)")
            + _card("selection", "none")
        )
        out = ['<div class="cards">' + "".join(out) + "</div>"]
        out.append(
            '<p class="note">No selection has been made from this run: the report shows the '
            "scores and their percentiles only. Run <code>datafilter select --run RUN ...</code> "
            "and report again to see what a selector keeps.</p>"
        )
    else:
        t = m.get("totals", {})
        read = t.get("read", 0) or 0
        groups = m.get("groups") or {}
        rt = sum(g.get("read_tokens", 0) for g in groups.values())
        kt = sum(g.get("kept_tokens", 0) for g in groups.values())
        dropped = ", ".join(
            f"{esc(k)}: {_n(v)}" for k, v in (t.get("dropped_by_reason") or {}).items()
        )
        rejected = ", ".join(
            f"{esc(k)}: {_n(v)}" for k, v in (t.get("rejected_by_reason") or {}).items()
        )
        cards = [
            _card("documents read", _n(read)),
            _card(
                "kept",
                _n(t.get("kept", 0)),
                _pct(t.get("kept", 0) / read if read else None) + " of read",
            ),
            _card("dropped", _n(t.get("dropped", 0)), dropped),
            _card("rejected", _n(t.get("rejected", 0)), rejected or "unscorable input"),
        ]
        if rt:
            cards.append(_card("tokens kept", _pct(kt / rt), f"{_n(kt)} of {_n(rt)}"))
        out.append('<div class="cards">' + "".join(cards) + "</div>")
        out.append(f"<p>Selector: {_selector_line(m)}.</p>")
    plan = (m or {}).get("thresholds") or {}
    for warning in plan.get("warnings", []) or []:
        out.append(f'<p class="note">Selector warning: {esc(warning)}</p>')
    for note in plan.get("notes", []) or []:
        out.append(f"<p>Selector: {esc(note)}</p>")
    for note in data.notes:
        out.append(f'<p class="note">{esc(note)}</p>')
    return _section("summary", "".join(out))


def _distribution(data: ReportData) -> str:
    ppl_note = (
        "Perplexity is drawn on a log scale, so equal widths are equal ratios. "
        "Red lines are the selection's thresholds (on the metric it ranks by"
        + (f": <b>{esc(data.plan_metric)}</b>" if data.manifest else "")
        + "), the green band what they keep, other dashed lines the selector's marks, and dotted "
        "lines percentiles from the thresholds table."
    )
    uri = plots.global_histograms(data)
    out = [
        f'<figure><img alt="Histograms of the scores of all documents" src="{uri}">'
        f"<figcaption>{ppl_note}</figcaption></figure>"
    ]
    if data.panel_column:
        where = (
            "thresholds per group"
            if data.plan_column == data.panel_column
            else "the global thresholds"
            if data.plan_marks_everywhere
            else "no thresholds of this grouping"
        )
        for i, view in enumerate(data.views):
            uri = plots.group_histograms(data, view)
            if uri is None:
                continue
            what = f"{esc(view.label)} per {esc(data.panel_column)}"
            fig = (
                f'<figure><img alt="Histograms of {what}" src="{uri}"><figcaption>Per '
                f"{esc(data.panel_column)}: each group on the global bins, with the shape of all "
                f"documents (scaled) behind it and {where}.</figcaption></figure>"
            )
            if i == 0 or view.metric == data.plan_metric:
                out.append(f"<h3>{what}</h3>{fig}")
            else:
                out.append(f"<details><summary>{what}</summary>{fig}</details>")
    out.append(_quantile_table(data))
    out.append(_fold_table(data))
    return _section("distribution", "".join(out))


def _fold_table(data: ReportData) -> str:
    """Cross-fitted scores: each fold's distribution of ln(ppl) as scored, and its calibration."""
    if not data.folds:
        return ""
    cal = (data.calibration or {}).get("folds", {})
    qs = list(next(iter(data.folds.values()))["quantiles_log_ppl"])
    rows = []
    for fold, s in sorted(data.folds.items()):
        c = cal.get(str(fold), {}).get("ppl", {})
        rows.append(
            [str(fold), _n(s["n_docs"]), _v(s["ppl_mean_log"]), _v(s["ppl_median_log"]),
             _v(s["ppl_mad_log"])]
            + [_v(v) for v in s["quantiles_log_ppl"].values()]
            + [_v(c.get("shift")) if c else "–", _v(c.get("scale")) if c else "–"]
        )  # fmt: skip
    headers = ["fold", "documents", "mean", "median", "MAD", *qs, "shift", "scale"]
    how = (
        "The selection ranked the calibrated scores: ln(ppl)' = shift + scale · ln(ppl) per "
        "fold, each fold's median and MAD mapped onto the folds' weighted means, and the plots "
        "above show the calibrated scores."
        if data.calibration
        else "No selection with a per-fold calibration: the plots above show the raw scores."
    )
    return (
        '<h3 id="folds">Per-fold distributions of ln(perplexity)</h3>'
        f'<p class="note">Each document is scored by the model of one fold. {esc(how)}</p>'
        + _table(headers, rows, set(range(1, len(headers))))
    )


def _quantile_table(data: ReportData) -> str:
    blocks = []
    for metric, label in (("ppl", "perplexity"), ("bpb", "bits per byte")):
        by_group = data.quantile_table.get(metric, {})
        if not by_group:
            continue
        qs = sorted({q for v in by_group.values() for q in v})
        groups = [ALL] + [g for g in sorted(by_group) if g != ALL]
        rows = [
            [_group(g), _n(data.counts.get(g, 0)) if g != ALL else _n(sum(data.counts.values()))]
            + [_v(by_group[g].get(q)) if q in by_group.get(g, {}) else "–" for q in qs]
            for g in groups
            if g in by_group
        ]
        headers = ["group", "documents"] + [f"p{round(q * 100, 2):g}" for q in qs]
        blocks.append(
            f"<h3>Percentiles of {esc(label)}</h3>"
            + _table(headers, rows, set(range(1, len(headers))))
        )
    return "".join(blocks)


def _group_rows(m: dict[str, Any]) -> list[dict[str, Any]]:
    groups = m.get("groups") or {}
    rows = [{"group": g, **c} for g, c in groups.items()]
    return sorted(rows, key=lambda r: (-r.get("read_tokens", 0), r["group"]))


def _groups(data: ReportData, m: dict[str, Any] | None) -> str:
    if m is None:
        return _section(
            "groups",
            '<p class="note">No selection yet: nothing was kept or dropped.</p>' + _what_if(data),
        )
    rows = _group_rows(m)
    column = m.get("report_by") or m.get("group_by")
    if not column:
        intro = (
            "<p>The selection was not counted by a column: select with "
            "<code>--report-by COLUMN</code> to see what each domain, language or source loses.</p>"
        )
    else:
        intro = (
            f"<p>Documents and tokens per <b>{esc(column)}</b> before and after the selection, and "
            "each group's share of the corpus: pruning shifts the mix.</p>"
        )
    t = m.get("totals", {})
    overall = t.get("kept", 0) / t["read"] if t.get("read") else None
    body = [intro]
    uri = plots.group_bars(rows, overall) if column else None
    if uri:
        body.append(
            f'<figure><img alt="Share of tokens and kept fraction per group" src="{uri}">'
            "<figcaption>Left: share of all tokens before and after. Right: documents kept per "
            "group; the dashed line is the overall kept fraction.</figcaption></figure>"
        )
    headers = [
        "group",
        "docs before",
        "docs after",
        "kept",
        "tokens before",
        "tokens after",
        "share of docs",
        "share of tokens",
        "rejected",
    ]
    table_rows = [
        [
            _group(r["group"]),
            _n(r.get("read", 0)),
            _n(r.get("kept", 0)),
            _pct(r["kept"] / r["read"] if r.get("read") else None),
            _n(r.get("read_tokens", 0)),
            _n(r.get("kept_tokens", 0)),
            f"{_pct(r.get('share_docs_before'))} → {_pct(r.get('share_docs_after'))}",
            f"{_pct(r.get('share_tokens_before'))} → {_pct(r.get('share_tokens_after'))}",
            _n(r.get("rejected", 0)),
        ]
        for r in rows[:500]
    ]
    body.append(_table(headers, table_rows, {1, 2, 3, 4, 5, 6, 7, 8}))
    if len(rows) > 500:
        body.append(f'<p class="caption">{len(rows) - 500} more groups in manifest.json.</p>')
    body.append(_what_if(data))
    return _section("groups", "".join(body))


def _bound(value: float) -> str:
    return "" if math.isinf(value) else f"{value:.4g}"


def _what_if(data: ReportData) -> str:
    """The keep-fraction table: each group's kept share at keep 0.3/0.5/0.7 with thresholds
    over all documents (from the percentile tables)."""
    t = data.keep_table
    if not t:
        return (
            '<p class="caption">No what-if table: it needs the percentile table over all '
            "documents (datafilter thresholds without --group-by).</p>"
        )
    keeps = list(t["bounds"])
    by = f" per <b>{esc(t['column'])}</b>" if t.get("column") else ""
    intro = (
        f"<h3>What if: keep fractions</h3><p>The share of each group{by} that a "
        f"<b>{esc(t['criterion'])}</b> band of <b>{esc(t['metric'])}</b> would keep with "
        "thresholds over all documents, read from the percentile tables (to within a "
        "percentile).</p>"
    )
    headers = ["group", *(f"keep {k:g}" for k in keeps)]
    bounds = ["bounds", *(esc(f"{_bound(lo)} … {_bound(hi)}") for lo, hi in t["bounds"].values())]
    rows = [bounds] + [
        [_group(g), *(_pct(shares[k]) for k in keeps)]
        for g, shares in sorted(t["shares"].items(), key=lambda item: item[0] != ALL)
    ]
    return intro + _table(headers, rows[:501], set(range(1, len(keeps) + 1)), narrow=True)


def _harmful(data: ReportData) -> str:
    """Per group of a harmful_outlier selection: what decided and why, the histogram with the
    fitted components, the cut and the labelled documents, and the documents nearest the cut."""
    body = [
        "<p>The selector flags documents whose perplexity under a model of harmful text is LOW "
        "(with a clean model: whose log ratio is high). Per group one mode decides: "
        "<b>manual</b> (a threshold), <b>calibrated</b> (labelled documents: the cut with the "
        "most recall whose precision lower bound meets the target) or <b>automatic</b> (a "
        "separate low mode found by a two-Gaussian fit). The texts around each cut are under "
        '<a href="#thresholds">Documents near the thresholds</a>.</p>'
    ]
    for panel in data.harmful:
        e = panel.entry
        fit = e.get("fit") or {}
        rows = [("mode", esc(e.get("mode", "?")))]
        if e.get("cut") is None:
            rows.append(("decision", f"<b>nothing flagged</b>: {esc(e.get('reason') or '')}"))
        else:
            what = f"ppl &lt; {_v(e.get('cut_ppl'))}" if panel.log_ppl else f"&gt; {_v(e['cut'])}"
            rows.append(
                ("decision", f"flag {what}: about {_pct(e.get('flagged_share'))} of the group")
            )
        for c in fit.get("components", []):
            name = "harmful component" if c["harmful"] else "clean component"
            if not fit.get("found"):
                side = "low" if c["harmful"] == panel.log_ppl else "high"
                name = f"fitted {side} component"
            where = f"ppl {_v(c['ppl'])}" if "ppl" in c else f"mean {_v(c['mean'])}"
            rows.append((name, f"{_pct(c['weight'])} of documents, {where}, sd {_v(c['sd'])}"))
        if fit.get("separation") is not None:
            detail = (
                f"Ashman's D {_v(fit['separation'])}, BIC gain {_v(fit.get('bic_gain'))}; "
                + ("accepted" if fit.get("found") else f"not accepted: {esc(fit.get('reason'))}")
            )
            if fit.get("expected_precision") is not None:
                detail += (
                    f"; if the fit holds, precision {_v(fit['expected_precision'])} and recall "
                    f"{_v(fit.get('expected_recall'))} at its cut"
                )
            rows.append(("two-component fit", detail))
        c = e.get("calibration")
        if c and c.get("precision"):
            p, r = c["precision"], c["recall"]
            rows.append(
                (
                    f"labels ({c['n_labels']}, {c['n_harmful']} harmful)",
                    f"precision {_v(p['value'])} [{_v(p['low'])}, {_v(p['high'])}] "
                    f"({p['k']}/{p['n']}; one-sided {_pct(c['confidence'])} bound "
                    f"{_v(c['precision_lower'])}, target {_v(c['target'])}), recall "
                    f"{_v(r['value'])} [{_v(r['low'])}, {_v(r['high'])}] at the cut shown",
                )
            )
        near = e.get("nearest") or []
        if near:
            rows.append(
                (
                    "nearest the cut",
                    ", ".join(f"{esc(d['doc_id'])} ({_v(d['value'])})" for d in near),
                )
            )
        uri = plots.harmful_histogram(panel)
        body.append(
            f"<h3>{_group(panel.group)} ({_n(e.get('n_docs', 0))} documents)</h3>"
            + "".join(f"<div><b>{esc(k)}:</b> {v}</div>" for k, v in rows)
            + f'<figure><img alt="Harmful-score histogram of {_group(panel.group)}" '
            f'src="{uri}"><figcaption>Bars: documents; dashed: the fitted components scaled '
            "to the counts, solid: their sum; red line: the cut; strip under the axis: the "
            "labelled documents; triangles: the documents nearest the cut.</figcaption></figure>"
        )
    return _section("harmful", "".join(body))


def _kept_cell(kept: bool | None) -> str:
    if kept is None:
        return "–"
    return '<span class="kept">kept</span>' if kept else '<span class="dropped">dropped</span>'


def _doc_cell(d: SampledDoc) -> str:
    more = "…" if d.truncated else ""
    where = f"{d.doc.input_file.rsplit('/', 1)[-1]} row {d.doc.row}"
    return (
        f'<div class="docid">{esc(d.doc.doc_id)} · {esc(where)}</div>'
        f'<div class="doc">{esc(d.text)}{more}</div>'
    )


def _doc_rows(docs: list[SampledDoc], data: ReportData, first: str, show_group: bool) -> str:
    headers = [first, "ppl", "bpb"]
    if data.plan_metric not in ("ppl", "bpb"):
        headers.append(data.plan_metric)
    headers.append("selection")
    if show_group:
        headers.append(data.plan_column or "group")
    headers.append("document (start of text)")
    rows = []
    for d in docs:
        row = [esc(d.label), _v(d.doc.ppl), _v(d.doc.bpb)]
        if data.plan_metric not in ("ppl", "bpb"):
            row.append(_v(d.doc.value))
        row.append(_kept_cell(d.kept))
        if show_group:
            row.append(_group(d.plan_group))
        row.append(_doc_cell(d))
        rows.append(row)
    return _table(
        headers, rows, {1, 2} | ({3} if data.plan_metric not in ("ppl", "bpb") else set())
    )


def _samples(data: ReportData) -> str:
    metric = data.plan_metric
    body = [
        f"<p>One document at each decile of <b>{esc(metric)}</b> (p0 is the lowest score, p100 the "
        f"highest), with the first {TEXT_CHARS} characters of its text.</p>"
    ]
    if ALL in data.deciles:
        body.append(
            "<h3>All documents</h3>"
            + _doc_rows(data.deciles[ALL], data, "decile", bool(data.plan_column))
        )
    groups = [g for g in sorted(data.deciles) if g != ALL]
    for g in groups:
        body.append(
            f"<details><summary>{esc(data.panel_column)} = {_group(g)} "
            f"({_n(data.counts.get(g, 0))} documents)</summary>"
            + _doc_rows(data.deciles[g], data, "decile", False)
            + "</details>"
        )
    return _section("samples", "".join(body))


def _near(data: ReportData) -> str:
    if not data.near:
        why = (
            "No selection has been made from this run."
            if data.manifest is None
            else "The selector's plan has no thresholds to show documents around."
        )
        return _section("thresholds", f'<p class="note">{esc(why)}</p>')
    body = [
        f"<p>The {NEAR_K} documents ranked just below and the {NEAR_K} at or above each threshold "
        "(ordered by the score, ties by id hash): what the cut separates.</p>"
    ]
    by_group: dict[str, list[Any]] = {}
    for block in data.near:
        by_group.setdefault(block.group, []).append(block)
    for group, blocks in by_group.items():
        tables = "".join(
            f"<h3>{esc(b.mark.label)} at {esc(b.mark.metric)} {_v(b.mark.value)}</h3>"
            + _doc_rows(b.docs, data, "side", False)
            for b in blocks
        )
        if group == ALL:
            body.append(tables)
        else:
            cuts = " · ".join(f"{esc(b.mark.label)} {_v(b.mark.value)}" for b in blocks)
            body.append(
                f"<details><summary>{esc(data.plan_column)} = {_group(group)}: {cuts}</summary>"
                f"{tables}</details>"
            )
    return _section("thresholds", "".join(body))


def _plan_table(plan: dict[str, Any], data: ReportData) -> str:
    groups = plan.get("groups") or {}
    if not groups:
        return ""
    keys: list[str] = []
    for params in groups.values():
        for k in params if isinstance(params, dict) else []:
            if k not in keys and k not in ("marks", "nearest", "labels"):
                keys.append(k)
    rows = []
    for g, params in list(groups.items())[:200]:
        params = params if isinstance(params, dict) else {"value": params}
        row = [_group(g)]
        for k in keys:
            v = params.get(k)
            if isinstance(v, dict) and "value" in v:
                v = v["value"]
            row.append(_v(v) if not isinstance(v, dict | list) else esc(_compact(v)))
        marks = [f"{mk.label} {mk.value:.4g}" for mk in data.marks.get(g, [])]
        row.append(esc(", ".join(marks)) or "–")
        rows.append(row)
    header = "<h3>Thresholds per group (the selector's plan)</h3>"
    meta = {k: v for k, v in plan.items() if k not in ("groups", "warnings", "notes")}
    line = f'<p class="caption">{esc(_compact(meta))}</p>' if meta else ""
    return header + line + _table(["group", *keys, "drawn marks"], rows)


def _signed(v: float | None) -> str:
    return "–" if v is None else f"{v:+.4f}"


def _evaluation(data: ReportData) -> str:
    """The evaluate table: per target, each candidate's loss, its difference to the random
    control with the interval, the seeds it won, the verdict; the recommendations first."""
    ev = data.evaluation or {}
    pct = f"{ev.get('confidence', 0.95):.0%}"
    parts = [
        f"<p>Proxy models (preset <code>{esc(ev.get('preset'))}</code>, {_n(ev.get('tokens'))} "
        f"tokens and {_n(ev.get('steps'))} steps each, {_n(ev.get('seeds'))} seeds) trained on "
        f"each candidate selection and on the random control ({esc(ev.get('control_is'))}); "
        "lower bits per byte on a target is better. Differences are candidate minus control, "
        f"paired by seed, with a {pct} t interval.</p>"
    ]
    for rec in ev.get("recommendations", []):
        parts.append(f'<p class="note"><b>{esc(rec["target"])}:</b> {esc(rec["statement"])}</p>')
    for target in ev.get("targets", []):
        rows = [
            [
                esc(r["candidate"]),
                _v(r["bits_per_byte_mean"]),
                _v(r["bits_per_byte_sd"]),
                _v(r["nats_per_token_mean"]),
                _signed(r["bits_per_byte_diff"]),
                "–" if r["bits_per_byte_diff_low"] is None else
                f"{r['bits_per_byte_diff_low']:+.4f} … {r['bits_per_byte_diff_high']:+.4f}",
                "–" if r["wins"] is None else _pct(r["wins"]),
                esc(r["verdict"]),
            ]
            for r in sorted(
                (r for r in ev.get("rows", []) if r["target"] == target),
                key=lambda r: r["bits_per_byte_mean"],
            )
        ]  # fmt: skip
        headers = ["candidate", "bits/byte", "sd", "nats/token", "vs random", f"{pct} interval",
                   "seeds won", "verdict"]  # fmt: skip
        parts.append(f"<h3>target {esc(target)}</h3>")
        parts.append(_table(headers, rows, numeric={1, 2, 3, 4, 5, 6}))
    return _section("evaluation", "".join(parts))


def _raw(name: str, obj: Any) -> str:
    return f'<details><summary>{esc(name)}</summary><pre class="json">{_json(obj)}</pre></details>'


def _metadata_pairs(meta: dict[str, Any]) -> list[tuple[str, str]]:
    """When each stage ran, for how long, by which datafilter and command; the model."""
    pairs = []
    for stage in ("score", "selection"):
        timing = meta.get(stage)
        if not timing:
            continue
        pairs.append(
            (
                stage,
                f"{esc(timing.get('started', '?'))} · {_v(timing.get('seconds', '?'))} s · "
                f"datafilter {esc(timing.get('datafilter', '?'))}",
            )
        )
        if timing.get("command"):
            pairs.append((f"{stage} command", f"<code>{esc(timing['command'])}</code>"))
    model = meta.get("model") or {}
    if model.get("scorer"):
        pairs.append(("scorer", esc(model["scorer"])))
    if model.get("model"):
        pairs.append(("model", f"<code>{esc(model['model'])}</code>"))
    if model.get("checksums"):
        pairs.append(("model files (sha256)", f"<code>{esc(_compact(model['checksums']))}</code>"))
    pairs.append(("report written by", f"datafilter {esc(__version__)}"))
    return pairs


def _config(data: ReportData, m: dict[str, Any] | None) -> str:
    rec = data.record
    entry = rec.scorers.get(data.scorer_id, {})
    scorer = entry.get("scorer", {})
    recipe = scorer.get("model_recipe") or {}
    pairs = [
        ("run folder", f"<code>{esc(data.run_dir)}</code>"),
        ("input", f"<code>{esc(rec.input)}</code>"),
        ("text column", f"<code>{esc(rec.text_column)}</code>"),
        (
            "id column",
            f"<code>{esc(rec.id_column)}</code>" if rec.id_column else "shard path and row",
        ),
        ("scorer id", f"<code>{esc(data.scorer_id)}</code>"),
        ("scorer", esc(f"{scorer.get('scorer', '?')} (version {scorer.get('version', '?')})")),
        ("scorer options", f"<code>{esc(_compact(scorer.get('options') or {}))}</code>"),
    ]
    if recipe:
        summary = {k: recipe[k] for k in ("order", "vocab_size", "binary_type") if k in recipe}
        pairs.append(("model", esc(_compact(summary))))
        if recipe.get("normalization"):
            pairs.append(
                ("normalisation", f"<code>{esc(_compact(recipe['normalization']))}</code>")
            )
        training = recipe.get("training") or {}
        if training:
            keep = {
                k: training[k] for k in ("documents", "lines", "bytes", "inputs") if k in training
            }
            pairs.append(("model training data", esc(_compact(keep))))
    if data.threshold_tables:
        pairs.append(
            (
                "thresholds tables",
                "<br>".join(f"<code>{esc(p)}</code>" for p in data.threshold_tables),
            )
        )
    body = ["<h3>Run metadata</h3>", _kv(_metadata_pairs(data.metadata))]
    body += ["<h3>Run and scorer</h3>", _kv(pairs)]
    if m is not None:
        sel = m.get("selector") or {}
        sel_pairs = [
            ("selection folder", f"<code>{esc(data.selection)}</code>"),
            ("selector", f"<b>{esc(sel.get('name', '?'))}</b>"),
            ("options", f"<code>{esc(_compact(sel.get('options') or {}))}</code>"),
            ("group by", esc(m.get("group_by") or "– (global thresholds)")),
            ("report by", esc(m.get("report_by") or "–")),
            ("seed", esc(m.get("seed", 0))),
            ("score columns in output", esc(bool(m.get("with_scores")))),
        ]
        if m.get("extra_scorers"):
            sel_pairs.append(("other scorers used", esc(", ".join(m["extra_scorers"]))))
        body += ["<h3>Selection</h3>", _kv(sel_pairs)]
        t = m.get("totals", {})
        counts = [["read", _n(t.get("read", 0))], ["kept", _n(t.get("kept", 0))]]
        counts += [
            [f"dropped: {esc(k)}", _n(v)] for k, v in (t.get("dropped_by_reason") or {}).items()
        ]
        counts += [
            [f"rejected: {esc(k)}", _n(v)] for k, v in (t.get("rejected_by_reason") or {}).items()
        ]
        body += [
            "<h3>Counts (every input row)</h3>",
            _table(["", "documents"], counts, {1}, narrow=True),
        ]
        body.append(_plan_table(m.get("thresholds") or {}, data))
        shown = {k: v for k, v in m.items() if k != "shards"}
        shown["shards"] = f"{len(m.get('shards', []))} shards (see manifest.json)"
        body.append(_raw("manifest.json", shown))
    body.append(_raw("run.json", rec.model_dump(mode="json")))
    return _section("config", "".join(body))
