"""report.html: a self-contained page with the plot, a table per method and sample generations."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path

from pluralign.evaluation.front import Front


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def write_report(
    path: str | Path,
    fronts: Sequence[Front],
    names: Sequence[str],
    reference: Sequence[float],
    plot: str | Path,
    title: str,
) -> Path:
    img = base64.b64encode(Path(plot).read_bytes()).decode()
    rows = "".join(
        f"<tr><td>{html.escape(f.method)}</td><td>{f.hypervolume:.3f}</td>"
        + "".join(f"<td>{_fmt(s)}</td>" for s in (f.steerability or [None] * len(names)))
        + "".join(f"<td>{_fmt(s)}</td>" for s in (f.range or [None] * len(names)))
        + f"<td>{f.wall_seconds:.1f}</td></tr>"
        for f in fronts
    )
    points = ""
    for f in fronts:
        body = "".join(
            "<tr><td>"
            + ", ".join(f"{w:g}" for w in p["preference"])
            + "</td>"
            + "".join(f"<td>{s:.3f}</td>" for s in p["scores"])
            + "</tr>"
            for p in f.points
        )
        samples = "".join(
            f"<li><b>w={html.escape(str(s['preference']))}</b> {html.escape(s['prompt'])} &rarr; <i>{html.escape(s['response'])}</i></li>"
            for s in f.samples[:12]
        )
        heads = "".join(f"<th>{html.escape(n)}</th>" for n in names)
        points += (
            f"<h3>{html.escape(f.method)}</h3><table><tr><th>preference</th>{heads}</tr>{body}</table>"
            f"<details><summary>sample generations</summary><ul>{samples}</ul></details>"
        )
    steer_heads = "".join(f"<th>steerability {html.escape(n)}</th>" for n in names)
    steer_heads += "".join(f"<th>range {html.escape(n)}</th>" for n in names)
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:1000px;margin:2em auto}}table{{border-collapse:collapse;margin:.5em 0}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}</style></head><body>
<h1>{html.escape(title)}</h1>
<p>Objectives: {", ".join(map(html.escape, names))}. Hypervolume in z-units of the SFT model's outputs, reference point {list(reference)}.
Steerability: Spearman correlation of w<sub>i</sub> with the achieved mean of objective i across the grid.
Range: the span of objective i's achieved means over the grid divided by the 5th-95th percentile spread of
objective i in the training data (order alone can be perfect while the model barely moves).</p>
<img src="data:image/png;base64,{img}" style="max-width:100%">
<table><tr><th>method</th><th>hypervolume</th>{steer_heads}<th>wall seconds</th></tr>{rows}</table>
{points}</body></html>"""
    path = Path(path)
    path.write_text(page)
    return path
