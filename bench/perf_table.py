"""Performance table for the README from saved pytest-benchmark JSON.

Every group holds ala_fast and its reference(s), run in the same session; the table reports
the median time and the ratio to the slowest entry of the group (ratios survive noisy machines,
absolute times do not).

Usage: python bench/perf_table.py bench/results.json [--readme README.md]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def fmt_time(seconds: float) -> str:
    for unit, scale in (("s", 1), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds:.3g} s"


def table(data: dict) -> str:
    groups: dict[str, list] = {}
    for b in data["benchmarks"]:
        groups.setdefault(b["group"] or b["name"], []).append(b)
    machine = data.get("machine_info", {})
    lines = [f"Measured on {machine.get('cpu', {}).get('brand_raw', 'unknown CPU')}, "
             f"{machine.get('cpu', {}).get('count', '?')} cores, Python "
             f"{machine.get('python_version', '?')} (`pytest bench/ --benchmark-only`).", ""]
    for name in sorted(groups):
        rows = sorted(groups[name], key=lambda b: b["stats"]["median"])
        slowest = max(b["stats"]["median"] for b in rows)
        lines.append(f"**{name}**\n")
        mem = any("peak_rss_mib" in (b.get("extra_info") or {}) for b in rows)
        lines.append("| benchmark | median | speed-up vs slowest | rows/s |"
                     + (" peak worker MiB |" if mem else ""))
        lines.append("|---|---|---|---|" + ("---|" if mem else ""))
        for b in rows:
            med = b["stats"]["median"]
            n = (b.get("extra_info") or {}).get("rows")
            rate = f"{n / med:,.0f}" if n else ""
            line = f"| {b['name']} | {fmt_time(med)} | {slowest / med:,.1f}x | {rate} |"
            if mem:
                peak = (b.get("extra_info") or {}).get("peak_rss_mib")
                line += f" {peak:,.0f} |" if peak else " |"
            lines.append(line)
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("json")
    ap.add_argument("--readme")
    args = ap.parse_args(argv)
    text = table(json.loads(Path(args.json).read_text()))
    if args.readme:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
        from ala_fast.report_tables import replace_section

        replace_section(args.readme, "performance", text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
