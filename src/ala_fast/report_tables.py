"""Evaluation results -> markdown / JSON, and README sections rewritten between markers."""

from __future__ import annotations

import json
import re
from pathlib import Path

#: protocol names (DESIGN.md section 4) -> the column a P3 variant leaves out one value of at a time
P3_BY = {"P3": "hardware", "P3-model": "model", "P3-framework": "framework"}
PROTOCOLS = ("P0", "P1", "P2", *P3_BY)
#: run when none are named (leave-one-framework-out is asked for by name)
DEFAULT_PROTOCOLS = ("P0", "P2", "P1", "P3", "P3-model")

METHOD_LABELS = {
    "ala_fast": "ala_fast (pooled trees + roofline + anchors)",
    "published": "published per-configuration (curve fit + trees on 7 features)",
    "direct_gbr": "direct boosted trees on throughput",
    "nn_params": "nearest-neighbour curve parameters",
}

EXTRA_COLUMNS = {  # uncertainty summaries, present for ala_fast when evaluated
    "coverage": "90% coverage",
    "rel_width": "mean rel. width",
    "median_rel_width": "median rel. width",
    "rank_corr": "rank corr.",
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
        extra_cols = [c for c in EXTRA_COLUMNS if any(c in m for m in r["methods"].values())]
        head = ["method", "median APE %", "mean APE %", "p90 APE %", "answered"] + [
            EXTRA_COLUMNS[c] for c in extra_cols]
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
    """JSON of the summaries (per-row arrays, keys starting with "_", are left out)."""
    public = [{k: v for k, v in r.items() if not k.startswith("_")} for r in results]
    return json.dumps(public, indent=2, sort_keys=True, default=float)


def from_json(text: str) -> list[dict]:
    """Results saved by :func:`to_json` (``ala-fast evaluate --format json --out F``)."""
    results = json.loads(text)
    if not isinstance(results, list) or not all(
            isinstance(r, dict) and {"source", "protocol", "methods"} <= r.keys() for r in results):
        raise ValueError("not an ala-fast evaluation JSON (expected a list of "
                         "{source, protocol, methods} objects)")
    return results


def replace_section(path: str | Path, name: str, content: str) -> None:
    """Replace the text between ``<!-- name:start -->`` and ``<!-- name:end -->`` in a file."""
    path = Path(path)
    text = path.read_text()
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        raise ValueError(f"{path}: markers {start} ... {end} not found")
    path.write_text(pattern.sub(lambda _: f"{start}\n{content.rstrip()}\n{end}", text))
