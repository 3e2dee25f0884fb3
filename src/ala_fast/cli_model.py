"""CLI commands that need a trained model: train, predict, evaluate, info."""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from pathlib import Path

from .report_tables import PROTOCOLS


def cmd_train(args: argparse.Namespace) -> int:
    from .cli import _read_many
    from .training import train

    table = _read_many(args.data, args.source)
    predictor = train(table, seed=args.seed, loss=args.loss, n_jobs=args.jobs)
    path = predictor.save(args.out)
    t = predictor.manifest["training"]
    short = t["curves_anchoring"] - t["curves_trained"]
    print(f"trained on {t['rows']} rows, {t['curves']} curves ({t['curves_trained']} learned "
          f"from: >= 3 batch sizes, none above the roofline; {short} shorter ones anchor their "
          f"configuration); bundle written to {path}")
    return 0


def _print_one(row: dict) -> None:
    print(f"{row['hardware']} x{row['num_devices']} / {row['framework']} / {row['model']} "
          f"({row['precision']}), {row['input_tokens']} in / {row['output_tokens']} out, "
          f"batch {row['batch_size']}:")
    print(f"  throughput  {row['throughput']:,.1f} output tokens/s   ({row['basis']})")
    print(f"  latency     {row['latency_s']:.3f} s per batch")
    if "lower" in row:
        print(f"  interval    {row['lower']:,.1f} .. {row['upper']:,.1f} tokens/s "
              f"(coverage {row.get('coverage', 0.9):.0%})")
        print(f"  expected APE {row['expected_ape']:.1f}%   confidence {row['confidence']:.2f}")
    if "memory_batch_limit" in row:
        limit = row["memory_batch_limit"]
        print("  memory      the weights alone do not fit the devices' memory" if limit == 0
              else f"  memory      the KV cache fits up to batch {limit:,}"
              + (" (exceeded)" if row["batch_size"] > limit else ""))


MAX_NOTES = 20  # unrecognised names printed by `predict` (the rest are counted)


def _note_unrecognised(predictor, table) -> None:
    """One ``note:`` line on stderr per name of ``table`` the catalog does not recognise."""
    from .names import unrecognised_names

    # the table was validated by predict: its names as given, the devices as the bundle knows
    _print_notes(unrecognised_names(table, predictor.inferred_devices))


def _print_notes(names) -> None:
    """The ``note:`` lines of unrecognised names (at most MAX_NOTES, most rows first within
    each column)."""
    for u in names[:MAX_NOTES]:
        print(f"note: {u}", file=sys.stderr)
    if len(names) > MAX_NOTES:
        print(f"note: ... and {len(names) - MAX_NOTES} more names the catalog does not "
              "recognise", file=sys.stderr)


def _predict_ray(args: argparse.Namespace) -> int:
    import time

    from .errors import ReaderError
    from .streaming import raise_failures

    if not args.input or not args.out:
        raise ReaderError("--engine ray needs an INPUT (Parquet file or folder) and --out FOLDER")
    from .ray import predict_files

    t0 = time.perf_counter()
    results = predict_files(args.input, args.out, bundle=args.bundle, workers=args.workers,
                            batch_rows=args.batch_rows, progress=args.progress or None)
    seconds = time.perf_counter() - t0
    done = [r for r in results if r.error is None]
    rows = sum(r.rows for r in done)
    peak = max((r.peak_rss_mib for r in results), default=0.0)
    print(f"predicted {rows:,} rows in {len(done)} of {len(results)} file(s) -> {args.out} "
          f"({rows / seconds:,.0f} rows/s including start-up; peak worker memory {peak:,.0f} MiB)")
    _print_notes(_unrecognised_in_files(args.bundle, done))
    raise_failures(results)
    return 0


def _unrecognised_in_files(bundle, results) -> list:
    """The unrecognised names of the files the workers predicted, from the name counts they
    returned, with the devices the bundle describes from its own benchmarks (its manifest)."""
    from .bundle import read_bundle
    from .catalog import InferredDevices
    from .names import merge_counts, unrecognised_in
    from .predictor import default_bundle_path

    counts: dict = {}
    for r in results:
        merge_counts(counts, r.names)
    if not counts:
        return []
    manifest, _ = read_bundle(default_bundle_path() if bundle is None else bundle)
    return unrecognised_in(counts, InferredDevices.from_json(manifest.get("inferred_hardware",
                                                                          [])))


def cmd_predict(args: argparse.Namespace) -> int:
    import pyarrow as pa

    from .errors import ReaderError
    from .predictor import load
    from .tables import write_table

    if args.engine == "ray":
        return _predict_ray(args)
    predictor = load(args.bundle)
    if args.input:
        table = _workload_table(Path(args.input))
        out = predictor.predict(table, engine=args.engine)
        _note_unrecognised(predictor, table)
        if args.out:
            write_table(out, args.out)
            print(f"predicted {out.num_rows} rows -> {args.out}")
        else:
            import pyarrow.csv as pacsv

            pacsv.write_csv(out, sys.stdout.buffer)
        return 0
    needed = ("hardware", "model", "framework", "input_tokens", "output_tokens", "batch_size")
    missing = [f"--{n.replace('_', '-')}" for n in needed if getattr(args, n) is None]
    if missing:
        raise ReaderError(f"give an input file or all of {', '.join(missing)}")
    row = {
        "hardware": [args.hardware], "num_devices": [args.num_devices],
        "framework": [args.framework], "model": [args.model], "precision": [args.precision],
        "input_tokens": [args.input_tokens], "output_tokens": [args.output_tokens],
        "batch_size": [args.batch_size],
    }
    out = predictor.predict(pa.table(row), engine=args.engine).to_pylist()[0]
    _note_unrecognised(predictor, pa.table(row))
    if args.json:
        print(json.dumps(out))
    else:
        _print_one(out)
    return 0


def _workload_table(path: Path):
    """A workload file in the canonical columns as given; a benchmark table in another layout
    ``read_benchmarks`` knows (Argonne, TensorRT-LLM DLI, fmwork) converted first, its read
    report on stderr, so its measurements come out as ``measured_throughput`` beside the
    predictions."""
    from .errors import ReaderError
    from .readers import _load_file, detect_source, read_benchmarks

    raw = _load_file(path)
    try:
        source = detect_source(raw.column_names)
    except ReaderError:  # no known layout: the predictor's validation names what is missing
        return raw
    if source == "canonical":
        return raw
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table, report = read_benchmarks(path, return_report=True)
    print(report.summary(), file=sys.stderr)
    return table


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .errors import ReaderError
    from .evaluate import run_all
    from .report_tables import from_json, markdown, replace_section, to_json

    if args.from_json:
        if args.data:
            raise ReaderError("give benchmark files or --from-json, not both")
        try:
            results = from_json(Path(args.from_json).read_text())
        except (OSError, ValueError) as exc:
            raise ReaderError(f"{args.from_json}: {exc}") from exc
    elif not args.data:
        raise ReaderError("give at least one benchmark file (or --from-json FILE)")
    else:
        results = run_all(args.data, protocols=args.protocol,
                          methods=tuple(args.methods.split(",")), seed=args.seed,
                          source=args.source, progress=args.progress,
                          uncertainty=not args.no_uncertainty, n_jobs=args.jobs,
                          hide=args.hide_names)
    text = to_json(results) if args.format == "json" else markdown(results)
    if args.out:
        Path(args.out).write_text(text)
    if args.readme:
        try:
            replace_section(args.readme, args.section, markdown(results))
        except (OSError, ValueError) as exc:  # no such file or no such section in it
            raise ReaderError(str(exc)) from exc
        print(f"updated the {args.section} section of {args.readme}", file=sys.stderr)
    if not args.out:
        print(text)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report import build_report

    page = build_report(args.data, args.out, protocols=args.protocol, bundle=args.bundle,
                        seed=args.seed, sample=args.sample, source=args.source,
                        progress=args.progress, methods=tuple(args.methods.split(",")),
                        n_jobs=args.jobs)
    print(f"report written to {page}")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from .predictor import load
    from .readers import _load_file
    from .tables import write_table

    plan = load(args.bundle).benchmark_next(_load_file(Path(args.candidates)), args.k,
                                            seed=args.seed)
    meta = {k.decode(): float(v) for k, v in plan.schema.metadata.items()}
    if args.out:
        write_table(plan, args.out)
    for row in plan.to_pylist():
        print(f"{row['hardware']} x{row['num_devices']} / {row['framework']} / {row['model']} "
              f"({row['precision']}), {row['input_tokens']} in / {row['output_tokens']} out")
    print(f"mean distance of the candidates to the nearest benchmarked curve: "
          f"{meta['mean_distance_before']:.3f} -> {meta['mean_distance_after']:.3f}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from .predictor import default_bundle_path, load

    p = load(args.bundle)
    m = p.manifest
    t = m["training"]
    print(f"bundle      {args.bundle or default_bundle_path()}")
    print(f"format      {m['format_version']}   loss {m['loss']}   seed {m['seed']}")
    print(f"training    {t['rows']} rows, {t['curves']} curves ({t['curves_trained']} trained), "
          f"sha256 {t['digest_sha256'][:16]}...")
    print(f"served      {p.n_fitted} curves answer with their own fit; {p.n_implausible} with a "
          "measurement above the roofline ceiling are predicted instead")
    print(f"hardware    {', '.join(t['hardware'])}")
    print(f"models      {', '.join(t['models'])}")
    print(f"frameworks  {', '.join(t['frameworks'])}")
    for d in m.get("inferred_hardware", []):  # described from its curves (device_inference)
        print(f"described   {d['name']}: {d['mem_bw_tbs']:.3g} TB/s, {d['fp16_tflops']:.4g} "
              f"TFLOP/s fp16, {d['mem_gb']:.4g} GB, vendor {d['vendor']} (not in the catalog)")
    ranges = p.observed_ranges
    if ranges is not None:
        s = p.beyond_slopes
        spans = ", ".join(f"{c.replace('_', ' ')} {lo:,.0f}-{hi:,.0f}"
                          for c, (lo, hi) in ranges.items())
        print(f"observed    {spans}; beyond them the {p.coverage:.0%} interval widens "
              f"{s.interval:.3g} per log unit up to {math.exp(s.reach):.3g}x out (as far as "
              "measured), by the factor itself farther")
    print(f"features    {len(m['feature_names'])}   targets {', '.join(m['target_names'])}")
    print("versions    " + ", ".join(f"{k} {v}" for k, v in sorted(m["versions"].items())))
    for name, value in sorted(m.get("metrics", {}).items()):
        parts = value.items() if isinstance(value, dict) else [("", value)]
        for sub, v in parts:
            label = f"{name}.{sub}" if sub else name
            print(f"metric      {label}: {v:.4g}" if isinstance(v, float) else f"metric      {label}: {v}")
    for name, digest in sorted(m["files"].items()):
        print(f"file        {name}  sha256 {digest[:16]}...")
    return 0


def _add_jobs(p: argparse.ArgumentParser) -> None:
    p.add_argument("--jobs", type=int, default=-1,
                   help="worker processes for the hold-out rounds (default -1: every core; "
                        "the result does not depend on it)")


def add_commands(sub: argparse._SubParsersAction) -> None:
    from .curves import DEFAULT_LOSS, LOSSES

    p = sub.add_parser("train", help="train a model bundle on benchmark files")
    p.add_argument("data", nargs="+")
    p.add_argument("--out", required=True, help="bundle folder to write")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--loss", choices=LOSSES, default=DEFAULT_LOSS)
    p.add_argument("--source", default=None)
    _add_jobs(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("predict", help="predict one workload (flags) or a table (INPUT --out)")
    p.add_argument("input", nargs="?", help="workload table (CSV, Parquet, Arrow), or a "
                   "benchmark table in a layout read_benchmarks knows")
    p.add_argument("--out", help="output table (.parquet, .csv, .arrow); CSV on stdout if omitted")
    p.add_argument("--bundle", default=None, help="model bundle folder (default: shipped model)")
    p.add_argument("--engine", choices=("compiled", "onnxruntime", "ray"), default="compiled",
                   help="tree evaluator, or 'ray': Parquet file/folder -> folder on Ray workers "
                        "(streaming, one output file per input file; needs ala_fast[ray])")
    p.add_argument("--workers", type=int, default=None, help="Ray workers (default: all CPUs)")
    p.add_argument("--batch-rows", type=int, default=262_144,
                   help="rows per batch a Ray worker holds in memory")
    p.add_argument("--progress", action="store_true")
    p.add_argument("--hardware")
    p.add_argument("--num-devices", type=int, default=1)
    p.add_argument("--framework")
    p.add_argument("--model")
    p.add_argument("--precision", default="fp16")
    p.add_argument("--input-tokens", type=int)
    p.add_argument("--output-tokens", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--json", action="store_true", help="print the single prediction as JSON")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("evaluate", help="run the evaluation protocols on benchmark files")
    p.add_argument("data", nargs="*", help="one table per data source")
    p.add_argument("--from-json", metavar="FILE",
                   help="render results saved with --format json --out FILE instead of running")
    p.add_argument("--protocol", action="append", choices=PROTOCOLS,
                   help="repeatable; default: all")
    p.add_argument("--methods", default="ala_fast,published,direct_gbr,nn_params")
    p.add_argument("--format", choices=("markdown", "json"), default="markdown")
    p.add_argument("--out", help="write the tables to this file")
    p.add_argument("--readme", help="rewrite the evaluation section of this README")
    p.add_argument("--section", default="evaluation",
                   help="the README section --readme rewrites (between <!-- NAME:start --> "
                        "and <!-- NAME:end -->)")
    p.add_argument("--hide-names", choices=("hardware", "model"),
                   help="evaluate with these names replaced by ones the catalog does not know")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--source", default=None)
    p.add_argument("--progress", action="store_true")
    _add_jobs(p)
    p.add_argument("--no-uncertainty", action="store_true",
                   help="skip the interval / expected-APE evaluation (much faster)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("report", help="HTML report with figures (needs ala_fast[report])")
    p.add_argument("data", nargs="+", help="one table per data source")
    p.add_argument("--out", required=True, help="folder for index.html, figures and tables")
    p.add_argument("--protocol", action="append", choices=PROTOCOLS,
                   help="repeatable; default: all")
    p.add_argument("--bundle", default=None,
                   help="model for the benchmarked curves ('default': the shipped one; "
                        "by default one is trained on DATA)")
    _add_jobs(p)
    p.add_argument("--sample", type=int, default=4, help="configurations in the curve figure")
    p.add_argument("--methods", default="ala_fast,published,direct_gbr,nn_params")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--source", default=None)
    p.add_argument("--progress", action="store_true")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("plan", help="which candidate workloads to benchmark next")
    p.add_argument("candidates", help="candidate workloads (CSV, Parquet, Arrow; batch size optional)")
    p.add_argument("--k", type=int, required=True, help="benchmarking budget (curves)")
    p.add_argument("--out", help="write the chosen curves to this table")
    p.add_argument("--bundle", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("info", help="what a bundle contains")
    p.add_argument("bundle", nargs="?", default=None)
    p.set_defaults(func=cmd_info)
