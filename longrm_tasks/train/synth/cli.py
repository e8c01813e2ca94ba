"""`longrm synth`: the paper's data synthesis, `short-to-long` then `vote`.

    longrm synth short-to-long --records short.jsonl --corpus distractors.jsonl \\
        --tokenizer Qwen/Qwen3-8B --lengths 8k,32k,128k --depths 0,0.5,1 -o long.jsonl
    longrm synth vote --input long.jsonl -o stage2.jsonl \\
        --judge openai:gpt-4o@https://api.openai.com/v1 --judge qwen=vllm:Qwen/Qwen3-32B ...

Both steps check every input record before writing anything, then write their
output as they go (one JSONL line per record, flushed) with a progress file
beside it, so an interrupted or failed run continues with ``--resume`` and
produces the same bytes as an uninterrupted one (`synth.progress`). Each step
prints one JSON summary line on stdout with what it wrote and what it skipped
(too short / too long contexts, no majority, parse failures, judgments cut at
the token limit, records longer than a judge's context, judge requests that
failed and were retried).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from itertools import islice
from pathlib import Path

from longrm_tasks.errors import InputError

HELP = "synthesise long-context judge data: short-to-long contexts, consistency voting"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="synth_command", required=True, metavar="METHOD")

    s2l = sub.add_parser("short-to-long", help="hide key passages in distractor text up to target lengths",
                         description="Build long judge records (the authors' Stage II layout) from short records "
                                     "and a distractor corpus.")
    s2l.add_argument("--records", required=True, help="JSONL: question, key_passages, optional responses, id")
    s2l.add_argument("--corpus", required=True, nargs="+",
                     help="distractor documents: JSONL files (one per line), text files (one per file), folders")
    s2l.add_argument("--text-field", default="text", help="document text field in corpus JSONL (default: text)")
    s2l.add_argument("--tokenizer", required=True, help="tokenizer (hub id or path) that measures lengths")
    s2l.add_argument("--lengths", default="32k", help="comma list of prompt lengths in tokens, e.g. 4k,32k,128k")
    s2l.add_argument("--depths", default="0.5",
                     help="key passage depth(s): fraction 0..1, comma list (one item each), or 'uniform'")
    s2l.add_argument("--tag", help="fixed key-passage tag, e.g. LD (default: random per item, as the authors)")
    s2l.add_argument("--system-prompt", help="file holding the judge system prompt; {tag} is filled in "
                                             "(default: the authors' prompt)")
    s2l.add_argument("--tolerance", type=float, default=0.02,
                     help="items shorter than (1 - tolerance) x length count as too short (default 0.02)")
    s2l.add_argument("--seed", type=int, default=0,
                     help="seed of the distractor draws, depths and tags; the same seed gives the same bytes "
                          "(default 0)")
    s2l.add_argument("-o", "--output", required=True, metavar="OUT.jsonl",
                     help="output JSONL, written record by record (progress in OUT.jsonl.progress.json)")
    s2l.add_argument("--resume", action="store_true",
                     help="continue an interrupted run on the same -o with the same options")

    vote = sub.add_parser("vote", help="score responses with several judges; keep majority vs dissent",
                          description="Consistency majority voting over judge records (e.g. short-to-long output).")
    vote.add_argument("--input", required=True, help="JSONL records with `messages` (system + user)")
    vote.add_argument("--judge", action="append", required=True, metavar="[NAME=]BACKEND:MODEL[@BASE_URL]",
                      help="repeat per judge; BACKEND is openai (MODEL@BASE_URL, key from --api-key-env), "
                           "vllm or hf (transformers)")
    vote.add_argument("--majority", choices=("plurality", "strict"), default="plurality",
                      help="plurality: a unique largest score group (the authors' data); strict: also > half")
    vote.add_argument("--rejected", choices=("dissent", "others"), default="dissent",
                      help="dissent: judgments that disagree with the majority; others: every other judgment "
                           "(the authors' sample layout)")
    vote.add_argument("--judge-context", choices=("short", "full"), default="short",
                      help="short: judges see only the tagged key passage (the paper); full: the whole prompt")
    vote.add_argument("--temperature", type=float, default=0.0,
                      help="judge sampling temperature (default 0: greedy, as the authors' data)")
    vote.add_argument("--max-new-tokens", type=int, default=1024,
                      help="most tokens per judgment (default 1024); judgments cut there are counted "
                           "(cut_at_length) and vote as failures")
    vote.add_argument("--seed", type=int, default=0,
                      help="sampling seed passed to every judge (matters with --temperature > 0; default 0)")
    vote.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable with the API key")
    vote.add_argument("--concurrency", type=int, default=4, help="parallel requests per openai judge")
    vote.add_argument("--timeout", type=float, default=300.0,
                      help="seconds to wait for one openai judge answer before retrying (default 300)")
    vote.add_argument("--retries", type=int, default=3,
                      help="retries per request after a dropped connection, timeout, 429 or 5xx (default 3)")
    vote.add_argument("--retry-wait", type=float, default=2.0,
                      help="first wait between retries in seconds, doubled each time up to 60 (default 2)")
    vote.add_argument("--batch-size", type=int, default=64,
                      help="records per judge call; progress is saved after each batch (default 64)")
    vote.add_argument("-o", "--output", required=True, metavar="OUT.jsonl",
                      help="output JSONL, written batch by batch (progress in OUT.jsonl.progress.json)")
    vote.add_argument("--resume", action="store_true",
                      help="continue an interrupted run on the same -o with the same options")


def _load_tokenizer(name: str):
    from transformers import AutoTokenizer

    from longrm_tasks.errors import InputError

    try:
        return AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as err:
        raise InputError(f"cannot load tokenizer: {err}", field="tokenizer") from None


def _sha256(path: str) -> str:
    from longrm_tasks.data.provenance import file_sha256

    return file_sha256(path)


def _positive(value, option: str) -> None:
    if value <= 0:
        raise InputError(f"must be positive, got {value}", field=option)


def _stopped(out, total: int, err: BaseException) -> BaseException:
    """The error that ends a run part-way, saying how far it got and how to continue."""
    where = f"{out.done} of {total} input records done, output so far in {out.output}; continue with --resume"
    if isinstance(err, KeyboardInterrupt):
        return KeyboardInterrupt(f"interrupted: {where}")
    return InputError(f"{err.message}; {where}", path=err.path, line=err.line, field=err.field)


def _run_resumably(out, total: int, work) -> None:
    """Run ``work()`` with ``out`` open; on an input error or Ctrl-C keep the progress and say so."""
    out.open()
    try:
        work()
    except (InputError, KeyboardInterrupt) as err:
        out.close()
        raise _stopped(out, total, err) from None
    except BaseException:
        out.close()
        raise
    out.finish()


def _warn(summary: dict) -> None:
    if summary.get("failed_attempts"):
        print(f"longrm synth: warning: {summary['failed_attempts']} judge requests failed (server error, malformed "
              "or empty reply, timeout, dropped connection) and were retried (failed_attempts)", file=sys.stderr)
    if summary.get("cut_at_length"):
        print(f"longrm synth: warning: {summary['cut_at_length']} judgments were cut at the token limit "
              "(finish_reason: length) and voted as failures; raise --max-new-tokens", file=sys.stderr)
    if summary.get("too_long"):
        print(f"longrm synth: warning: {summary['too_long']} records were longer than a judge's context and "
              "were skipped (see dropped_ids)", file=sys.stderr)


def _short_to_long(args) -> dict:
    from tqdm.auto import tqdm

    from longrm_tasks.train.synth import dump_jsonl_line
    from longrm_tasks.train.synth.progress import ResumableOutput
    from longrm_tasks.train.synth.short_to_long import (
        AUTHORS_SYSTEM_PROMPT, DistractorCorpus, ShortToLong, ShortToLongConfig, ShortToLongSummary,
        load_short_records, parse_depths, parse_length)

    system_prompt = (Path(args.system_prompt).read_text(encoding="utf-8") if args.system_prompt
                     else AUTHORS_SYSTEM_PROMPT)
    config = ShortToLongConfig(
        lengths=tuple(parse_length(x) for x in args.lengths.split(",")),
        depths=parse_depths(args.depths), seed=args.seed, tag=args.tag, tolerance=args.tolerance,
        system_prompt=system_prompt)
    from longrm_tasks.atomic import refuse_overwriting_inputs
    from longrm_tasks.train.synth.short_to_long import expand_corpus_paths

    refuse_overwriting_inputs(args.output, [args.records, *expand_corpus_paths(args.corpus),
                                            *([args.system_prompt] if args.system_prompt else [])], "--output")
    records = list(load_short_records(args.records))  # every record checked before anything is written
    # The corpus can be large: its files are fingerprinted by size and modification time, not hashed.
    corpus_files = [[str(p), p.stat().st_size, p.stat().st_mtime_ns] for p in expand_corpus_paths(args.corpus)]
    settings = {"records_sha256": _sha256(args.records), "corpus": corpus_files,
                "text_field": args.text_field, "tokenizer": args.tokenizer, "lengths": args.lengths,
                "depths": args.depths, "tag": args.tag, "tolerance": args.tolerance, "seed": args.seed,
                "system_prompt_sha256": hashlib.sha256(system_prompt.encode("utf-8")).hexdigest()}
    out = ResumableOutput(args.output, command="short-to-long", settings=settings, resume=args.resume)
    out.check()
    tokenizer = _load_tokenizer(args.tokenizer)
    corpus = DistractorCorpus.from_paths(args.corpus, tokenizer, text_field=args.text_field)
    builder = ShortToLong(corpus, tokenizer, config)

    def work():
        if out.summary:
            builder.summary = ShortToLongSummary(**out.summary)
        for index in tqdm(range(out.done, len(records)), desc="short-to-long", unit="record",
                          initial=out.done, total=len(records)):
            for item in builder.build(records[index]):
                out.write(dump_jsonl_line(item))
            out.checkpoint(index + 1, builder.summary.as_dict())

    _run_resumably(out, len(records), work)
    return {**builder.summary.as_dict(), "resumed_from": out.resumed_from}


def _vote(args) -> dict:
    from tqdm.auto import tqdm

    from longrm_tasks.train.synth import dump_jsonl_line, read_jsonl
    from longrm_tasks.train.synth.judges import GenerationSettings, RetryPolicy, build_judge, parse_judge_spec
    from longrm_tasks.train.synth.progress import ResumableOutput
    from longrm_tasks.train.synth.voting import ConsistencyVoter, VoteSummary, validate_messages

    names = [parse_judge_spec(spec)[0] for spec in args.judge]  # cheap checks first
    if len(names) < 2:
        raise InputError("consistency voting needs at least two judges", field="judge")
    if len(set(names)) != len(names):
        raise InputError(f"judge names must be unique, got {names}; name them NAME=BACKEND:MODEL", field="judge")
    _positive(args.batch_size, "--batch-size")
    _positive(args.timeout, "--timeout")
    _positive(args.max_new_tokens, "--max-new-tokens")
    if args.retries < 0 or args.retry_wait < 0:
        raise InputError("--retries and --retry-wait must not be negative", field="--retries")
    from longrm_tasks.atomic import refuse_overwriting_inputs

    refuse_overwriting_inputs(args.output, [args.input], "--output")
    total = 0
    for line, record in read_jsonl(args.input):  # every record checked before anything is written
        validate_messages(record, path=args.input, line=line)
        total += 1
    settings = {"input_sha256": _sha256(args.input), "judges": list(args.judge), "majority": args.majority,
                "rejected": args.rejected, "judge_context": args.judge_context, "temperature": args.temperature,
                "max_new_tokens": args.max_new_tokens, "seed": args.seed, "batch_size": args.batch_size}
    out = ResumableOutput(args.output, command="vote", settings=settings, resume=args.resume)
    out.check()
    generation = GenerationSettings(temperature=args.temperature, max_new_tokens=args.max_new_tokens,
                                    seed=args.seed)
    retry = RetryPolicy(timeout=args.timeout, retries=args.retries, backoff=args.retry_wait)
    judges = [build_judge(spec, generation, api_key_env=args.api_key_env, concurrency=args.concurrency,
                          retry=retry) for spec in args.judge]
    voter = ConsistencyVoter(judges, majority=args.majority, rejected=args.rejected,
                             judge_context=args.judge_context)

    def work():
        if out.summary:
            voter.summary = VoteSummary(**out.summary)
        records = islice(read_jsonl(args.input), out.done, None)
        with tqdm(desc="vote", unit="record", initial=out.done, total=total) as bar:
            while batch := [record for _, record in islice(records, args.batch_size)]:
                for voted in voter.run(batch, first=out.done):
                    out.write(dump_jsonl_line(voted))
                out.checkpoint(out.done + len(batch), voter.summary.as_dict())
                bar.update(len(batch))

    _run_resumably(out, total, work)
    return {**voter.summary.as_dict(), "resumed_from": out.resumed_from}


def run(args) -> int:
    summary = _short_to_long(args) if args.synth_command == "short-to-long" else _vote(args)
    _warn(summary)
    print(json.dumps({"synth": args.synth_command, "output": args.output, **summary}))
    return 0
