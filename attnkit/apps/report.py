"""`attnkit evaluate MODEL --data FILE --report DIR`: an evaluation as one self-contained HTML page (its figures
embedded, no script, nothing loaded from elsewhere), the same figures as PNG files, and report.json (the metrics).
What it shows beyond the metrics is the task's to find (Task.examine; attnkit/findings.py, tasks/evaluation.py):
a classifier's confusion matrix, its classes' scores and surest mistakes; a tagger's accuracy per tag and commonest
confusions in context; a generator's chrF per output and its lowest outputs beside their references; a regressor's
predictions against the gold numbers and its largest errors. This module draws them, whatever the task.
"""

from __future__ import annotations

import base64
import html
import io
import os
from pathlib import Path

from attnkit.apps.plots import pyplot
from attnkit.errors import AttnkitError
from attnkit.files import FORMAT, REPORT_FILE, atomic_directory, write_json
from attnkit.findings import Chart, Finding, Marked, Table


def write_report(
    task: object, model: str, data: str, metrics: dict, examples: list, predictions: list, out: str | os.PathLike
) -> Path:
    """The report of `task`'s `predictions` for the labelled `examples` of file `data`, in the folder `out` (a new
    one, or an earlier report, replaced whole); returns the page's path."""
    out = Path(out)
    if out.exists() and not (out.is_dir() and (not any(out.iterdir()) or (out / REPORT_FILE).is_file())):
        raise AttnkitError(
            f"{out}: exists and is not an attnkit report; refusing to replace it (choose another --report)"
        )
    findings = task.examine(metrics, examples, predictions)
    plt = pyplot("--report draws its figures with")
    figures = {f"figure{n}.png": _draw(chart, plt) for n, chart in enumerate(_charts(findings), start=1)}
    page = _page(model, data, len(examples), metrics, findings, list(figures.values()))
    with atomic_directory(out) as tmp:
        for name, png in figures.items():
            (tmp / name).write_bytes(png)
        (tmp / "report.html").write_text(page, encoding="utf-8")
        write_json(tmp / REPORT_FILE, {"format": FORMAT, "model": model, "data": data, "metrics": metrics})
    return out / "report.html"


def _charts(findings: list[Finding]) -> list[Chart]:
    return [finding for finding in findings if isinstance(finding, Chart)]


def _draw(chart: Chart, plt) -> bytes:
    if chart.kind == "matrix":
        figure, axes = plt.subplots(figsize=(2.2 + 0.55 * len(chart.columns), 1.6 + 0.5 * len(chart.rows)), dpi=110)
        axes.imshow(chart.values, cmap="Blues")
        axes.set_xticks(range(len(chart.columns)), chart.columns, rotation=45, ha="right")
        axes.set_yticks(range(len(chart.rows)), chart.rows)
        if len(chart.columns) <= 30:
            top = max(max(row) for row in chart.values) or 1
            for i, row in enumerate(chart.values):
                for j, count in enumerate(row):
                    axes.text(
                        j, i, f"{count:,}", ha="center", va="center", color="white" if count > top / 2 else "black"
                    )
    elif chart.kind == "bars":
        figure, axes = plt.subplots(figsize=(6, 1.0 + 0.22 * len(chart.rows)), dpi=110)
        axes.barh(range(len(chart.rows)), [100 * v for v in chart.values], color="#4c78a8")
        axes.set_yticks(range(len(chart.rows)), chart.rows)
        axes.invert_yaxis()
        axes.set_xlim(0, 100)
    elif chart.kind == "histogram":
        figure, axes = plt.subplots(figsize=(6, 3.2), dpi=110)
        axes.hist(chart.values, bins=20, range=(0, 100), color="#4c78a8")
    else:  # scatter
        figure, axes = plt.subplots(figsize=(4.5, 4.5), dpi=110)
        xs, ys = [x for x, _ in chart.values], [y for _, y in chart.values]
        axes.scatter(xs, ys, s=8, alpha=0.5, color="#4c78a8")
        low, high = min(xs + ys, default=0), max(xs + ys, default=1)
        axes.plot([low, high], [low, high], color="gray", linestyle="--", linewidth=1)
    axes.set_xlabel(chart.x_label + (" (%)" if chart.kind == "bars" else ""))
    axes.set_ylabel(chart.y_label)
    return _png(figure, plt)


def _png(figure, plt) -> bytes:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


def _metrics_table(metrics: dict) -> str:
    numbers = {name: value for name, value in metrics.items() if isinstance(value, (int, float))}
    cells = "".join(f"<tr><th>{html.escape(name)}</th><td>{value:.4f}</td></tr>" for name, value in numbers.items())
    return f"<table class=metrics>{cells}</table>"


def _cell(value: str | Marked) -> str:
    if isinstance(value, Marked):
        return f"{html.escape(value.before)}<mark>{html.escape(value.marked)}</mark>{html.escape(value.after)}"
    return html.escape(value).replace("\n", "<br>")


def _page(model: str, data: str, count: int, metrics: dict, findings: list[Finding], pngs: list[bytes]) -> str:
    parts, drawn = [], iter(pngs)
    for finding in findings:
        if finding.title:
            parts.append(f"<h2>{html.escape(finding.title)}</h2>")
        if finding.note:
            parts.append(f"<p class=note>{html.escape(finding.note)}</p>")
        if isinstance(finding, Chart):
            encoded = base64.b64encode(next(drawn)).decode()
            parts.append(f'<img alt="{html.escape(finding.title)}" src="data:image/png;base64,{encoded}">')
        elif isinstance(finding, Table):
            head = "".join(f"<th>{html.escape(h)}</th>" for h in finding.headers)
            body = "".join("<tr>" + "".join(f"<td>{_cell(c)}</td>" for c in row) + "</tr>" for row in finding.rows)
            parts.append(f"<table class=rows><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
    return TEMPLATE.format(
        model=html.escape(model),
        data=html.escape(data),
        count=f"{count:,}",
        metrics=_metrics_table(metrics),
        sections="\n".join(parts),
    )


TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>attnkit evaluation: {model}</title>
<style>
  body {{ margin: 0; padding: 16px 24px; color: #1f2933; max-width: 1200px;
         font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }}
  h1 {{ font-size: 20px; margin: 0 0 4px; }} h2 {{ font-size: 16px; margin: 24px 0 4px; }}
  .note, .source {{ color: #616e7c; margin: 0 0 8px; }}
  table {{ border-collapse: collapse; }}
  th, td {{ text-align: left; vertical-align: top; padding: 3px 10px 3px 0; border-bottom: 1px solid #e4e7eb; }}
  table.rows td {{ overflow-wrap: anywhere; max-width: 420px; }}
  table.metrics th {{ font-weight: normal; color: #616e7c; }}
  .second {{ color: #616e7c; }}
  mark {{ background: #fde68a; }}
  img {{ max-width: 100%; }}
</style>
</head>
<body>
<h1>Evaluation</h1>
<p class=source>model <b>{model}</b> on <b>{data}</b>: {count} examples</p>
{metrics}
{sections}
</body>
</html>
"""
