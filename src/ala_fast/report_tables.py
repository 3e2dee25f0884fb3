"""Evaluation results -> markdown / JSON, and README sections rewritten between markers."""

from __future__ import annotations

import json
import re
from pathlib import Path

METHOD_LABELS = {
    "ala_fast": "ala_fast (pooled trees + roofline + anchors)",
    "published": "published per-configuration (curve fit + trees on 7 features)",
    "direct_gbr": "direct boosted trees on throughput",
    "nn_params": "nearest-neighbour curve parameters",
}


def _fmt(v, digits=1):
    if v is None or (isinstance(v, float) and v != v):
        return "n/a"
    return f"{v:.{digits}f}"


def markdown(results: list[dict]) -> str:
    """One markdown table per (source, protocol)."""
    out = []
    for r in results:
        out.append(f"**{r['source']}: {r['protocol']}** ({r.get('rows', '?')} rows, "
                   f"{r.get('folds', r.get('curves', '?'))} {'folds' if 'folds' in r else 'curves'})\n")
        extra_cols = [c for c in ("coverage", "rel_width", "rank_corr") if any(
            c in m for m in r["methods"].values())]
        head = ["method", "median APE %", "mean APE %", "p90 APE %", "answered"] + [
            {"coverage": "90% coverage", "rel_width": "rel. width", "rank_corr": "rank corr."}[c]
            for c in extra_cols]
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "---|" * len(head))
        for name, m in r["methods"].items():
            row = [METHOD_LABELS.get(name, name), _fmt(m["median_ape"]), _fmt(m["mean_ape"]),
                   _fmt(m["p90_ape"]), f"{100 * m.get('answered', 1.0):.0f}%"]
            row += [_fmt(m.get(c), 2) for c in extra_cols]
            out.append("| " + " | ".join(row) + " |")
        out.append("")
    return "\n".join(out)


def to_json(results: list[dict]) -> str:
    return json.dumps(results, indent=2, sort_keys=True, default=float)


def replace_section(path: str | Path, name: str, content: str) -> None:
    """Replace the text between ``<!-- name:start -->`` and ``<!-- name:end -->`` in a file."""
    path = Path(path)
    text = path.read_text()
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        raise ValueError(f"{path}: markers {start} ... {end} not found")
    path.write_text(pattern.sub(lambda _: f"{start}\n{content.rstrip()}\n{end}", text))
