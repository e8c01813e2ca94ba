"""`longrm synth`: the paper's data synthesis, `short-to-long` then `vote`.

    longrm synth short-to-long --records short.jsonl --corpus distractors.jsonl \\
        --tokenizer Qwen/Qwen3-8B --lengths 8k,32k,128k --depths 0,0.5,1 -o long.jsonl
    longrm synth vote --input long.jsonl -o stage2.jsonl \\
        --judge openai:gpt-4o@https://api.openai.com/v1 --judge qwen=vllm:Qwen/Qwen3-32B ...

Each step prints one JSON summary line on stdout with what it wrote and what it
skipped (too short / too long contexts, no majority, parse failures).
"""
from __future__ import annotations

import argparse
import json
import os
from itertools import islice
from pathlib import Path

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
    s2l.add_argument("--seed", type=int, default=0)
    s2l.add_argument("-o", "--output", required=True)

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
    vote.add_argument("--temperature", type=float, default=0.0)
    vote.add_argument("--max-new-tokens", type=int, default=1024)
    vote.add_argument("--seed", type=int, default=0)
    vote.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable with the API key")
    vote.add_argument("--concurrency", type=int, default=4, help="parallel requests per openai judge")
    vote.add_argument("--batch-size", type=int, default=64, help="records per judge call")
    vote.add_argument("-o", "--output", required=True)


def _load_tokenizer(name: str):
    from transformers import AutoTokenizer

    from longrm_tasks.errors import InputError

    try:
        return AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as err:
        raise InputError(f"cannot load tokenizer: {err}", field="tokenizer") from None


def _write(path: str, lines) -> None:
    """Write to a temporary name and rename, so a failed run leaves no half file behind."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    try:
        with partial.open("w", encoding="utf-8") as handle:
            for line in lines:
                handle.write(line)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, target)


def _short_to_long(args) -> dict:
    from tqdm.auto import tqdm

    from longrm_tasks.train.synth import dump_jsonl_line
    from longrm_tasks.train.synth.short_to_long import (
        AUTHORS_SYSTEM_PROMPT, DistractorCorpus, ShortToLong, ShortToLongConfig, load_short_records,
        parse_depths, parse_length)

    config = ShortToLongConfig(
        lengths=tuple(parse_length(x) for x in args.lengths.split(",")),
        depths=parse_depths(args.depths), seed=args.seed, tag=args.tag, tolerance=args.tolerance,
        system_prompt=Path(args.system_prompt).read_text(encoding="utf-8") if args.system_prompt
        else AUTHORS_SYSTEM_PROMPT)
    tokenizer = _load_tokenizer(args.tokenizer)
    corpus = DistractorCorpus.from_paths(args.corpus, tokenizer, text_field=args.text_field)
    builder = ShortToLong(corpus, tokenizer, config)

    def lines():
        for record in tqdm(load_short_records(args.records), desc="short-to-long", unit="record"):
            for item in builder.build(record):
                yield dump_jsonl_line(item)

    _write(args.output, lines())
    return builder.summary.as_dict()


def _vote(args) -> dict:
    from tqdm.auto import tqdm

    from longrm_tasks.train.synth import dump_jsonl_line, read_jsonl
    from longrm_tasks.train.synth.judges import GenerationSettings, build_judge
    from longrm_tasks.train.synth.voting import ConsistencyVoter, validate_messages

    settings = GenerationSettings(temperature=args.temperature, max_new_tokens=args.max_new_tokens, seed=args.seed)
    judges = [build_judge(spec, settings, api_key_env=args.api_key_env, concurrency=args.concurrency)
              for spec in args.judge]
    voter = ConsistencyVoter(judges, majority=args.majority, rejected=args.rejected,
                             judge_context=args.judge_context)

    def lines():
        records = iter(read_jsonl(args.input))
        with tqdm(desc="vote", unit="record") as bar:
            while batch := list(islice(records, args.batch_size)):
                for line, record in batch:
                    validate_messages(record, path=args.input, line=line)
                for voted in voter.run([record for _, record in batch]):
                    yield dump_jsonl_line(voted)
                bar.update(len(batch))

    _write(args.output, lines())
    return voter.summary.as_dict()


def run(args) -> int:
    summary = _short_to_long(args) if args.synth_command == "short-to-long" else _vote(args)
    print(json.dumps({"synth": args.synth_command, "output": args.output, **summary}))
    return 0
