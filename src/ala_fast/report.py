"""`ala-fast report`: an HTML page with figures and the tables behind them.

The page is built from the same protocol runs as ``ala-fast evaluate`` (:func:`run_all` with
the per-row arrays kept), so every number in its tables is the evaluate command's number. Every
figure has a CSV beside it holding the data it draws. Needs matplotlib (``ala_fast[report]``).
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import numpy as np
import pyarrow as pa

from .catalog import hardware_id, model_id, normalise_framework
from .metrics import ape
from .report_tables import DEFAULT_PROTOCOLS, EXTRA_COLUMNS, METHOD_LABELS, to_json

NOMINAL_LEVELS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
APE_FLOOR = 1e-2  # APE % drawn on log axes is clipped here (an exact prediction has APE 0)
MAX_COLOURED = 10  # groups drawn in their own colour; the rest are "other"
CURVE_KEY_COLUMNS = ("hardware", "num_devices", "framework", "model", "precision",
                     "input_tokens", "output_tokens", "batch_kind")


def _plt():
    try:
        import matplotlib
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("ala-fast report needs matplotlib: pip install 'ala_fast[report]'") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _write_csv(path: Path, columns: dict[str, np.ndarray | list]) -> None:
    import pyarrow.csv as pacsv

    pacsv.write_csv(pa.table({k: pa.array(v) for k, v in columns.items()}), path)


# --------------------------------------------------------------------------- data
def reliability(rows: dict, levels=NOMINAL_LEVELS) -> np.ndarray:
    """Empirical coverage of the ala_fast interval at each nominal level.

    The interval at level c is pred * exp(+-half), half from ``uncertainty.half_width`` with
    q_f(c) the split-conformal quantile of fold f's calibration scores at the row's novelty
    level, widened by the row's extrapolation beyond the fold's benchmarked ranges
    (``beyond``), exactly as the predictor builds it at load time.
    """
    from .uncertainty import half_width, level_quantiles

    sigma = rows["extra"].get("sigma")
    if sigma is None:
        return np.full(len(levels), np.nan)
    pred, y, fold = rows["pred"]["ala_fast"], rows["actual"], rows["fold"]
    ok = np.flatnonzero(np.isfinite(sigma) & np.isfinite(pred))
    abs_err = np.abs(np.log(y[ok] / pred[ok]))
    novelty = rows["extra"]["level"][ok].astype(np.int64)
    beyond = rows["extra"].get("beyond", np.zeros(sigma.size))[ok]
    out = []
    for c in levels:
        half = np.full(ok.size, np.inf)
        for f, (scores, score_levels, rounds) in rows["calibration"].items():
            m = fold[ok] == f
            q = level_quantiles(scores, score_levels, c)
            half[m] = rounds.slopes(q, c).widen(sigma[ok][m], half_width(q, novelty[m],
                                                                        sigma[ok][m]),
                                                beyond[m])[1]
        out.append(float(np.mean(abs_err <= half)))
    return np.array(out)


def row_table(r: dict) -> dict[str, np.ndarray | list]:
    """The per-row table behind the figures of one (source, protocol) result."""
    rows = r["_rows"]
    t: pa.Table = rows["table"]
    cols: dict[str, np.ndarray | list] = {c: t.column(c).to_pylist() for c in CURVE_KEY_COLUMNS}
    cols["batch_size"] = rows["batch_size"]
    cols["measured"] = rows["actual"]
    cols["fold"] = rows["fold"]
    for m, p in rows["pred"].items():
        cols[f"pred_{m}"] = p
    for name in ("lower", "upper", "expected_ape"):
        if name in rows["extra"]:
            cols[name] = rows["extra"][name]
    return cols


# --------------------------------------------------------------------------- figures
def _colours(groups: list[str]):
    plt = _plt()
    names, counts = np.unique(groups, return_counts=True)
    top = [str(n) for n in names[np.argsort(-counts, kind="stable")][:MAX_COLOURED]]
    cmap = plt.get_cmap("tab10")
    return {g: cmap(i % 10) for i, g in enumerate(sorted(top))}


def fig_pred_vs_measured(results: list[dict], path: Path) -> str:
    plt = _plt()
    fig, axes = plt.subplots(1, len(results), figsize=(5.2 * len(results), 4.8), squeeze=False)
    for ax, r in zip(axes[0], results):
        rows = r["_rows"]
        hw = [hardware_id(h) for h in rows["table"].column("hardware").to_pylist()]
        colours = _colours(hw)
        y, p = rows["actual"], rows["pred"]["ala_fast"]
        for g in sorted(set(hw), key=lambda g: (g not in colours, g)):
            m = np.array([h == g for h in hw]) & np.isfinite(p)
            ax.scatter(y[m], p[m], s=6, alpha=0.6, color=colours.get(g, "0.6"),
                       label=g if g in colours else None)
        lim = [min(y.min(), np.nanmin(p)) * 0.8, max(y.max(), np.nanmax(p)) * 1.25]
        ax.plot(lim, lim, "k-", lw=0.8)
        ax.plot(lim, [v * 1.25 for v in lim], "k:", lw=0.6)
        ax.plot(lim, [v / 1.25 for v in lim], "k:", lw=0.6)
        ax.set(xscale="log", yscale="log", xlim=lim, ylim=lim, xlabel="measured (output tokens/s)",
               ylabel="predicted by ala_fast (held out)",
               title=f"{r['protocol']}\nmedian APE {r['methods']['ala_fast']['median_ape']:.1f}%")
        ax.legend(fontsize=7, markerscale=2, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return ("Predicted (held out) vs measured throughput, log-log, one panel per protocol, "
            "coloured by hardware. Solid line: exact; dotted: +-25%.")


def fig_ape_by(r: dict, by: str, path: Path) -> str:
    plt = _plt()
    rows = r["_rows"]
    raw = rows["table"].column(by).to_pylist()
    norm = {"hardware": hardware_id, "model": model_id, "framework": normalise_framework}[by]
    groups = np.array([norm(v) for v in raw])
    names = sorted(set(groups.tolist()))
    methods = [m for m in rows["pred"] if np.isfinite(rows["pred"][m]).any()]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(names) * len(methods) ** 0.5 + 2), 4.6))
    width = 0.8 / len(methods)
    cmap = plt.get_cmap("tab10")
    for k, m in enumerate(methods):
        p = rows["pred"][m]
        data = []
        for g in names:
            sel = (groups == g) & np.isfinite(p)
            data.append(np.maximum(ape(p[sel], rows["actual"][sel]), APE_FLOOR) if sel.any()
                        else np.array([np.nan]))
        pos = np.arange(len(names)) + (k - (len(methods) - 1) / 2) * width
        bp = ax.boxplot(data, positions=pos, widths=width * 0.9, showfliers=False,
                        patch_artist=True, whis=(10, 90), medianprops={"color": "black"})
        for box in bp["boxes"]:
            box.set(facecolor=cmap(k), alpha=0.55)
        ax.plot([], [], color=cmap(k), lw=6, alpha=0.55, label=METHOD_LABELS.get(m, m))
    ax.set_xticks(np.arange(len(names)), names, rotation=35, ha="right", fontsize=8)
    ax.set(yscale="log", ylabel="APE % (held out)",
           title=f"{r['source']}: APE by {by}, {r['protocol']}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return (f"APE of held-out rows by {by} under {r['protocol']}, ala_fast and the baselines "
            "(box: quartiles, whiskers: 10th and 90th percentiles; a method with no answer for a "
            "group has no box).")


def fig_reliability(results: list[dict], path: Path) -> tuple[str, dict]:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.8, 4.6))
    table: dict[str, list] = {"nominal": list(NOMINAL_LEVELS)}
    for r in results:
        emp = reliability(r["_rows"])
        table[r["protocol"]] = emp.tolist()
        ax.plot(NOMINAL_LEVELS, emp, "o-", label=r["protocol"])
    ax.plot([0.45, 1], [0.45, 1], "k-", lw=0.8)
    ax.set(xlim=(0.45, 1.0), ylim=(0.0, 1.02), xlabel="nominal coverage",
           ylabel="empirical coverage (held out)", title="Interval reliability")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return ("Reliability diagram: the share of held-out measurements inside the interval against "
            "the coverage asked for (on the diagonal = calibrated).", table)


def fig_expected_ape(results: list[dict], path: Path) -> str:
    plt = _plt()
    fig, axes = plt.subplots(1, len(results), figsize=(5.0 * len(results), 4.5), squeeze=False)
    for ax, r in zip(axes[0], results):
        rows = r["_rows"]
        e = rows["extra"].get("expected_ape")
        p = rows["pred"]["ala_fast"]
        if e is None:
            ax.set_title(f"{r['protocol']}: no uncertainty evaluated")
            continue
        ok = np.isfinite(e) & np.isfinite(p)
        a = np.maximum(ape(p[ok], rows["actual"][ok]), APE_FLOOR)
        ax.scatter(e[ok], a, s=5, alpha=0.35, color="tab:blue")
        edges = np.quantile(e[ok], np.linspace(0, 1, 11))
        mid, med = [], []
        for lo, hi in zip(edges[:-1], edges[1:]):
            sel = (e[ok] >= lo) & (e[ok] <= hi)
            if sel.any():
                mid.append(np.median(e[ok][sel]))
                med.append(np.median(a[sel]))
        ax.plot(mid, med, "o-", color="tab:red", label="median actual APE per decile")
        lim = [min(e[ok].min(), 0.1), max(e[ok].max(), a.max()) * 1.2]
        ax.plot(lim, lim, "k-", lw=0.8)
        rho = r["methods"]["ala_fast"].get("rank_corr", float("nan"))
        ax.set(xscale="log", yscale="log", xlabel="expected APE % (predicted)",
               ylabel="actual APE % (held out)", title=f"{r['protocol']}: rank corr. {rho:.2f}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return ("Expected APE (what the predictor says its error will be) against the actual APE of "
            "held-out rows; red: median actual APE in each decile of expected APE.")


def _sample_curves(table: pa.Table, n: int, seed: int) -> list[int]:
    """Rows of the first point of ``n`` curves with the most batch sizes (ties: random)."""
    from .grouping import group_codes
    from .schema import CURVE_KEY

    codes, first = group_codes(table, CURVE_KEY)
    counts = np.bincount(codes)
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(counts.size), -counts))
    chosen, seen = [], set()
    hw = table.column("hardware").to_pylist()
    for g in order:  # prefer different hardware
        h = hardware_id(hw[first[g]])
        if h in seen and len(seen) < len(set(map(hardware_id, hw))):
            continue
        seen.add(h)
        chosen.append(int(g))
        if len(chosen) == n:
            break
    return chosen


def fig_curves(r: dict, predictor, n: int, seed: int, path: Path) -> tuple[str, dict]:
    """Left: the curve of a benchmarked configuration as the trained model gives it (basis
    "fitted"); right: the same curve predicted with it held out (the protocol's fold model)."""
    from .grouping import group_codes
    from .schema import CURVE_KEY

    plt = _plt()
    rows = r["_rows"]
    t: pa.Table = rows["table"]
    codes, first = group_codes(t, CURVE_KEY)
    picks = _sample_curves(t, n, seed)
    fig, axes = plt.subplots(len(picks), 2, figsize=(10, 2.7 * len(picks)), squeeze=False)
    data: dict[str, list] = {k: [] for k in ("curve", "panel", "batch_size", "measured",
                                             "predicted", "lower", "upper")}
    keys = t.select(list(CURVE_KEY)).to_pylist()
    for i, g in enumerate(picks):
        sel = np.flatnonzero(codes == g)
        sel = sel[np.argsort(rows["batch_size"][sel])]
        bb, y = rows["batch_size"][sel], rows["actual"][sel]
        w = dict(keys[first[g]])
        label = (f"{hardware_id(w['hardware'])} x{w['num_devices']} {normalise_framework(w['framework'])} "
                 f"{model_id(w['model'])} {w['input_tokens']}/{w['output_tokens']}")
        grid = np.unique(np.geomspace(1, max(bb.max() * 1.5, 2), 60).round())
        cp = predictor.curve(w, grid)
        ax = axes[i, 0]
        ax.fill_between(grid, cp.lower, cp.upper, color="tab:blue", alpha=0.2)
        ax.plot(grid, cp.throughput, color="tab:blue", label=f"model ({cp.basis})")
        ax.plot(bb, y, "ko", ms=3, label="measured")
        ax.set(xscale="log", title=f"benchmarked: {label}", ylabel="tokens/s")
        ax.title.set_fontsize(8)
        ax.legend(fontsize=7)
        for j in range(grid.size):
            for k, v in zip(data, (label, "benchmarked", grid[j], np.nan, cp.throughput[j],
                                   cp.lower[j], cp.upper[j])):
                data[k].append(v)
        ax = axes[i, 1]
        p = rows["pred"]["ala_fast"][sel]
        lo = rows["extra"].get("lower", np.full(rows["actual"].size, np.nan))[sel]
        hi = rows["extra"].get("upper", np.full(rows["actual"].size, np.nan))[sel]
        ax.fill_between(bb, lo, hi, color="tab:orange", alpha=0.25)
        ax.plot(bb, p, "-", color="tab:orange", label="predicted with this curve held out")
        ax.plot(bb, y, "ko", ms=3, label="measured")
        ax.set(xscale="log", title=f"held out ({r['protocol']}): {label}")
        ax.title.set_fontsize(8)
        ax.legend(fontsize=7)
        for j in range(bb.size):
            for k, v in zip(data, (label, "held out", bb[j], y[j], p[j], lo[j], hi[j])):
                data[k].append(v)
    for ax in axes[-1]:
        ax.set_xlabel("batch size")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return ("Measured points (black) and predicted curves with the interval band for a sample of "
            "configurations. Left: the model trained on everything (the curve was benchmarked). "
            f"Right: the same curve predicted under {r['protocol']} with it held out.", data)


# --------------------------------------------------------------------------- page
def _html_table(r: dict) -> str:
    extra = [c for c in EXTRA_COLUMNS if any(c in m for m in r["methods"].values())]
    head = ["method", "median APE %", "mean APE %", "p90 APE %", "answered"] + [
        EXTRA_COLUMNS[c] for c in extra]

    def fmt(v, d=1):
        return "n/a" if v is None or v != v else f"{v:.{d}f}"

    body = []
    for name, m in r["methods"].items():
        cells = [METHOD_LABELS.get(name, name), fmt(m["median_ape"]), fmt(m["mean_ape"]),
                 fmt(m["p90_ape"]), f"{100 * m.get('answered', 1.0):.0f}%"]
        cells += [fmt(m.get(c), 2) for c in extra]
        body.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    return ("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"
            + "".join(body) + "</table>")


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>ala_fast evaluation report</title>
<style>
body {{ font-family: sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 90%; }}
td, th {{ border: 1px solid #ccc; padding: 3px 8px; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
figure {{ margin: 1em 0 2em; }} figcaption {{ font-size: 90%; color: #444; }}
img {{ max-width: 100%; border: 1px solid #eee; }}
</style></head><body>
<h1>ala_fast evaluation report</h1>
<p>Data: {data}. Protocols as in DESIGN.md section 4; every number is the held-out result of
the same runs as <code>ala-fast evaluate</code> (seed {seed}). The data behind every figure is in
the CSV linked under it; all results in <a href="evaluation.json">evaluation.json</a>.</p>
{body}
</body></html>
"""


def build_report(paths: list[str], out_dir: str | Path, protocols: list[str] | None = None,
                 bundle: str | None = None, seed: int = 0, sample: int = 4,
                 source: str | None = None, progress: bool = False,
                 methods: tuple[str, ...] = ("ala_fast", "published", "direct_gbr", "nn_params"),
                 n_jobs: int | None = 1) -> Path:
    """Run the protocols on ``paths`` and write ``index.html``, figures and tables to ``out_dir``.

    ``bundle``: the model drawn as "benchmarked" in the curve figure; by default one is trained
    on the given data (``"default"`` uses the shipped model). Returns the page's path.
    """
    from .evaluate import run_all
    from .predictor import load
    from .readers import concat_tables
    from .report_tables import markdown

    _plt()  # fail early without matplotlib
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    protocols = protocols or list(DEFAULT_PROTOCOLS)
    if "ala_fast" not in methods:
        raise ValueError("the report draws ala_fast's predictions: keep it in methods")
    results = run_all(paths, protocols=protocols, methods=methods, seed=seed, source=source,
                      progress=progress, uncertainty=True, keep_rows=True, n_jobs=n_jobs)
    (out / "evaluation.json").write_text(to_json(results))
    (out / "evaluation.md").write_text(markdown(results))
    with_rows = [r for r in results if "_rows" in r]
    if bundle is None and with_rows:
        from .training import train

        tables = {id(r["_rows"]["table"]): r["_rows"]["table"] for r in with_rows}
        predictor = train(concat_tables(list(tables.values())), seed=seed, progress=progress)
    else:
        predictor = load(None if bundle in (None, "default") else bundle)

    body: list[str] = []

    def figure(name: str, caption: str, csv: str | None) -> None:
        link = f' <a href="{csv}">data ({csv})</a>' if csv else ""
        body.append(f'<figure><img src="{name}" alt="{html.escape(caption)}">'
                    f"<figcaption>{html.escape(caption)}{link}</figcaption></figure>")

    for src in dict.fromkeys(r["source"] for r in results):
        mine = [r for r in results if r["source"] == src]
        s = _slug(src)
        body.append(f"<h2>{html.escape(src)}</h2>")
        for r in mine:
            body.append(f"<h3>{html.escape(r['protocol'])}</h3>{_html_table(r)}")
        rows_r = [r for r in mine if "_rows" in r]
        if not rows_r:
            continue
        for r in rows_r:
            csv = f"rows-{s}-{_slug(r['protocol'])}.csv"
            _write_csv(out / csv, row_table(r))
        main = next((r for r in rows_r if r["protocol"] == "P1"), rows_r[0])
        cap, data = fig_curves(main, predictor, sample, seed, out / f"curves-{s}.png")
        _write_csv(out / f"curves-{s}.csv", data)
        figure(f"curves-{s}.png", cap, f"curves-{s}.csv")
        cap = fig_pred_vs_measured(rows_r, out / f"pred-vs-measured-{s}.png")
        figure(f"pred-vs-measured-{s}.png", cap, f"rows-{s}-{_slug(rows_r[0]['protocol'])}.csv")
        for by in ("hardware", "framework", "model"):
            cap = fig_ape_by(main, by, out / f"ape-by-{by}-{s}.png")
            figure(f"ape-by-{by}-{s}.png", cap, f"rows-{s}-{_slug(main['protocol'])}.csv")
        cap, data = fig_reliability(rows_r, out / f"reliability-{s}.png")
        _write_csv(out / f"reliability-{s}.csv", data)
        figure(f"reliability-{s}.png", cap, f"reliability-{s}.csv")
        cap = fig_expected_ape(rows_r, out / f"expected-ape-{s}.png")
        figure(f"expected-ape-{s}.png", cap, f"rows-{s}-{_slug(main['protocol'])}.csv")
    page = out / "index.html"
    page.write_text(PAGE.format(data=html.escape(", ".join(map(str, paths))), seed=seed,
                                body="\n".join(body)))
    return page
