"""The benchmark's judge prompts, built as chat messages.

The strings come verbatim from the benchmark authors' evaluator (LCM-Lab/Long-RM,
evaluate/evaluating/longreward_bench/utils/prompt.py; the pair prompt is the
MT-Bench / RewardBench judge prompt) and ship in ``data/judge_prompts.json``:
results are only comparable under the same prompt, so they are data, not code
to edit.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Sequence

from longrm_tasks.data.schema import Item

PROMPTS_FILE = Path(__file__).parents[1] / "data" / "judge_prompts.json"
LETTERS = "ABCDEFGHIJ"


@lru_cache(maxsize=1)
def judge_prompts() -> dict:
    return json.loads(PROMPTS_FILE.read_text(encoding="utf-8"))


def rank_pattern(n: int) -> str:
    return "[[" + ">".join(LETTERS[:n]) + "]]"


def system_prompt(n: int, kind: str) -> str:
    """``kind`` is ``pair`` (exactly two answers) or ``rank`` (Best-of-N)."""
    p = judge_prompts()
    if kind == "pair":
        return p["pair_system"]
    if kind == "rank":
        return p["rank_system_template"].format(number=n, pattern=rank_pattern(n))
    raise ValueError(f"unknown prompt kind {kind!r} (pair, rank)")


def user_prompt(question: str, shown_answers: Sequence[str]) -> str:
    t = judge_prompts()["user_template"]
    blocks = [t["answer_block"].format(letter=LETTERS[i], answer=a) for i, a in enumerate(shown_answers)]
    return t["question"].format(question=question) + t["answer_separator"].join(blocks)


def prompt_kind(item: Item) -> str:
    return "rank" if item.tasktype == "BestOfN" else "pair"


def shown_answers(item: Item, order: Sequence[int]) -> list[str]:
    """Position i shows ``answers[order[i]]``."""
    return [item.answers[k] for k in order]


def judge_messages(item: Item, order: Sequence[int]) -> list[dict[str, str]]:
    """System + user messages for judging ``item`` with its answers shown in ``order``."""
    answers = shown_answers(item, order)
    return [
        {"role": "system", "content": system_prompt(len(answers), prompt_kind(item))},
        {"role": "user", "content": user_prompt(item.judge_question, answers)},
    ]


def render_chat(tokenizer, messages: list[dict[str, str]], *, add_generation_prompt: bool = True,
                enable_thinking: bool = False) -> str:
    """Apply a tokenizer's chat template, switching thinking off where the template knows the switch.

    Templates that do not use ``enable_thinking`` ignore the extra variable, as
    the reference evaluator relies on too.
    """
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt,
                                         enable_thinking=enable_thinking)
