"""`longrm score`: re-score per-item predictions (ours or the reference evaluator's).

The output path is checked before any work and written atomically (the old
file stays whole until the new one is complete). The JSON carries
``provenance``: which prompt protocol produced the verdicts (from the rows;
``unknown`` when they do not say) and the SHA-256 of every predictions file read.
"""
from __future__ import annotations

from pathlib import Path

from longrm_tasks.errors import InputError
from longrm_tasks.verdicts.parsing import PARSERS

HELP = "re-score per-item prediction files with the benchmark's metrics (and ours)"
UNKNOWN_PROTOCOL = "unknown"


def add_arguments(p) -> None:
    p.add_argument("--predictions", nargs="+", required=True, metavar="FILE",
                   help="JSONL prediction files or folders of them (e.g. the reference evaluator's {subset}.jsonl)")
    p.add_argument("--json", metavar="OUT", help="write the metrics JSON here (atomically)")
    p.add_argument("--parser", choices=PARSERS, default="reference",
                   help="verdict parser: the reference evaluator's rules (default) or the final verdict only")
    p.add_argument("--name", help="model name shown in the table and stored in the JSON")
    p.add_argument("--quiet", action="store_true", help="do not print the table")


def _protocol(rows) -> str:
    """The one protocol the rows were produced under; mixing protocols in one score is an error."""
    seen: dict[str, str] = {}
    for r in rows:
        label = r.protocol or UNKNOWN_PROTOCOL
        seen.setdefault(label, r.item_id)
    if len(seen) > 1:
        listing = ", ".join(f"{label} (e.g. item {item})" for label, item in seen.items())
        raise InputError(f"rows come from different prompt protocols: {listing}; score each protocol separately",
                         field="protocol")
    return next(iter(seen), UNKNOWN_PROTOCOL)


def score_files(paths, parser: str = "reference", name: str | None = None) -> dict:
    from longrm_tasks.data.provenance import file_sha256
    from longrm_tasks.metrics.benchmark import compute_metrics
    from longrm_tasks.verdicts.predictions import expand_paths, read_predictions

    files = expand_paths(paths)
    rows = list(read_predictions(files, parser=parser))
    metrics = compute_metrics(rows, parser=parser)
    provenance = {
        "protocol": _protocol(rows),
        "parser": parser,
        "predictions": [{"path": str(f), "sha256": file_sha256(f)} for f in files],
    }
    return {"model": name or Path(str(paths[0])).stem, **metrics, "provenance": provenance}


def run(args) -> int:
    from longrm_tasks.atomic import check_writable, refuse_overwriting_inputs, write_json
    from longrm_tasks.verdicts.predictions import expand_paths

    if args.json is not None and not args.json.strip():
        raise InputError("empty path", field="--json")
    if args.json:  # validate before any work, and long before anything is replaced
        check_writable(args.json, "--json", make_parents=True)
        refuse_overwriting_inputs(args.json, expand_paths(args.predictions), "--json")
    result = score_files(args.predictions, args.parser, args.name)
    if args.json:
        write_json(args.json, result)
    if not args.quiet:
        from longrm_tasks.report.layout import Run
        from longrm_tasks.report.table import print_report

        print_report([Run(result["model"], result, source=str(args.json or ""))])
    return 0
