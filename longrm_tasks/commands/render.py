"""`longrm render`: write exactly the prompts the generative judge tasks send, one JSON line per presentation.

For batch APIs and external harnesses, and to check the protocol: under
``--protocol paper`` (default) each prompt is the reference evaluator's
``get_prompt`` output for that (item, order), byte for byte. Each line has
``id``, ``config``, ``tasktype``, ``shown_order`` (position i shows
``answers[shown_order[i]]``; answers are stored best first), ``prompt``,
``prompt_tokens`` (as the model sees it), ``truncated`` / ``truncated_tokens``,
``overlong`` (beyond ``--max-length``: the task scores it wrong without asking
the model) and ``skipped`` (``--protocol fit --overlong skip``).
"""
from __future__ import annotations

import sys

from longrm_tasks.context.fitting import DEFAULT_PROTOCOL, GENERATION_TOKENS, OVERLONG_POLICIES, PROTOCOLS

HELP = "write the generative judge's prompts (paper protocol by default) to a JSONL file, one per presentation"


def add_arguments(p) -> None:
    p.add_argument("--data", default="hub", help="'hub' (default), 'sample', or a folder of {Config}.jsonl files")
    p.add_argument("--data-revision", help="hub dataset revision (default: main)")
    p.add_argument("--tokenizer", required=True, help="tokenizer name or path (the judge model's)")
    p.add_argument("--protocol", choices=PROTOCOLS, default=DEFAULT_PROTOCOL,
                   help="paper (default): the reference's prompts; fit: instructions and answers kept whole, "
                        "context cut to --max-length")
    p.add_argument("--max-length", type=int, metavar="N",
                   help="the model's context: marks over-long prompts (paper) or fits them (fit)")
    p.add_argument("--max-gen-toks", type=int, default=GENERATION_TOKENS, metavar="N",
                   help=f"fit: generation budget kept free (default {GENERATION_TOKENS})")
    p.add_argument("--overlong", choices=OVERLONG_POLICIES, default=None,
                   help="fit: cut the context (default) or skip prompts that do not fit")
    p.add_argument("--order", default="paper", help="paper (default) | both | hash:SEED")
    p.add_argument("--configs", nargs="*", help="only these configs")
    p.add_argument("--tasktypes", nargs="*", help="only these task types (PairWise, BestOfN)")
    p.add_argument("--trust-remote-code", action="store_true", help="allow the tokenizer's own code")
    p.add_argument("--out", required=True, metavar="FILE.jsonl", help="output file (written atomically)")


def _positive(value, option: str) -> None:
    from longrm_tasks.errors import InputError

    if value is not None and value <= 0:
        raise InputError(f"expected a positive integer, got {value}", field=option)


def render_rows(presentations) -> list[dict]:
    return [{"id": p.id, "config": p.config, "tasktype": p.tasktype, "shown_order": list(p.order),
             "prompt": p.prompt, "prompt_tokens": p.prompt_tokens, "truncated": p.truncated_tokens > 0,
             "truncated_tokens": p.truncated_tokens, "overlong": p.overlong, "skipped": p.skipped,
             "protocol": p.protocol} for p in presentations]


def run(args) -> int:
    from longrm_tasks.atomic import check_writable, write_jsonl
    from longrm_tasks.data import load_benchmark, select
    from longrm_tasks.errors import InputError
    from longrm_tasks.context.fitting import FitStats
    from longrm_tasks.requests.build import build_presentations
    from longrm_tasks.requests.options import RunOptions

    check_writable(args.out, "--out")
    _positive(args.max_length, "--max-length")
    _positive(args.max_gen_toks, "--max-gen-toks")
    run_options = RunOptions.parse(protocol=args.protocol, order=args.order, overlong=args.overlong,
                                   gen_tokens=args.max_gen_toks, name=lambda option: f"--{option.replace('_', '-')}")
    scheme = run_options.order
    fitting = run_options.fitting("generative", args.max_length)
    fitting.refuse_no_room("--max-length", "; lower --max-gen-toks or raise --max-length")  # before any loading
    bench = load_benchmark(args.data, revision=args.data_revision) if args.data_revision else load_benchmark(args.data)
    items = select(bench.items, configs=args.configs or None, tasktypes=args.tasktypes or None)
    if not items:
        raise InputError(f"no items selected in {bench.source}", field="--configs/--tasktypes")
    tokenizer = _tokenizer(args.tokenizer, args.trust_remote_code)
    stats = FitStats()
    presentations = build_presentations(items, scheme.orders_for, judge="generative", tokenizer=tokenizer,
                                        fitting=fitting, orders=str(scheme), stats=stats)
    n = write_jsonl(args.out, render_rows(presentations))
    print(f"longrm render: {n} prompts ({run_options.protocol} protocol, order {scheme}, max_length "
          f"{args.max_length or 'not given'}) -> {args.out}; {stats.summary()}", file=sys.stderr)
    return 0


def _tokenizer(name: str, trust_remote_code: bool):
    from longrm_tasks.errors import InputError

    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code)
    except ImportError:
        raise
    except Exception as err:  # hub, file and format errors come in many types
        first = str(err).splitlines()[0] if str(err) else ""
        raise InputError(f"cannot load the tokenizer ({type(err).__name__}: {first})", path=name,
                         field="--tokenizer") from None
