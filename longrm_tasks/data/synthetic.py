"""Synthetic Long-RewardBench records in the exact hub schema.

The real data set lives on the hub, which these machines cannot reach; tests,
the quick start and the benchmarks use records generated here instead. They
are clearly marked synthetic (``source: "synthetic"``) and follow the real
per-config counts and field layout (DESIGN.md §2). Each item hides one fact in
a long distractor context; the better answer states the fact, worse answers
get it wrong or dodge, so a judge that reads the context can win.
"""
from __future__ import annotations

import random
from typing import Iterator

from longrm_tasks.data.schema import CONFIGS, LENGTH_BUCKETS

# (PairWise, BestOfN) records per config in the real benchmark.
REAL_COUNTS = {"LongQA": (240, 282), "Summ": (200, 229), "Cite": (100, 290), "Code": (100, 97),
               "ICL": (160, 2), "Safety": (140, 0), "Math": (60, 0)}
# Approximate tokens per length bucket, and words per token for English text.
BUCKET_TOKENS = {"4k": 4_000, "8k": 8_000, "16k": 16_000, "32k": 32_000, "64k": 64_000, "128k": 120_000}
WORDS_PER_TOKEN = 0.75
PAIR_SUBTYPES = ("same", "diff-model-a_vs_model-b")

_WORDS = ("river archive harbor lantern meadow signal quarry ledger orbit canyon ember tundra "
          "compass vessel mosaic beacon thicket summit glacier prairie cipher anchor falcon orchard "
          "the of and a to in is was for on that with as by at from report city council year plan").split()
_NAMES = ("Alder", "Brinn", "Corvo", "Delmar", "Esker", "Fenwick", "Galen", "Harrow", "Isolde", "Jorund")
_THINGS = ("bridge", "library", "observatory", "canal", "museum", "lighthouse", "market", "railway")


def _filler(rng: random.Random, n_words: int) -> str:
    words = rng.choices(_WORDS, k=n_words)
    # Sentences of 12 words keep tokenizers' behaviour close to prose.
    return " ".join(" ".join(words[i:i + 12]).capitalize() + "." for i in range(0, len(words), 12))


def _item(rng: random.Random, config: str, idx: int, tasktype: str, subtype: str, bucket: str,
          context_words: int) -> dict:
    name, thing = rng.choice(_NAMES), rng.choice(_THINGS)
    year = rng.randint(1700, 1999)
    fact = f"The {thing} of {name} was completed in {year}."
    depth = rng.random()
    before = int(context_words * depth)
    context = f"{_filler(rng, before)} {fact} {_filler(rng, context_words - before)}"
    question = f"In which year was the {thing} of {name} completed?"
    good = f"According to the document, the {thing} of {name} was completed in {year}."
    wrong = [f"The {thing} of {name} was completed in {year + d}." for d in rng.sample(range(3, 60), 3)]
    dodge = f"The document does not say when the {thing} of {name} was completed."
    record = {
        "id": f"synthetic-{config}-{idx:04d}",
        "prompt_template": [
            {"role": "system", "content": "You are a helpful assistant. Answer using the document."},
            {"role": "user", "content": f"<document>\n{context}\n</document>\n\n{question}"},
        ],
        "question": question,
        "source": "synthetic",
        "subtask": config.lower(),
        "task": config,
        "tasktype": tasktype,
        "subtype": subtype,
        "ctx_length_for_length": bucket,
        "ctx_length_for_words": bucket,
        "length": int(context_words / WORDS_PER_TOKEN),
        "words_count": context_words,
    }
    if tasktype == "PairWise":
        rejected = rng.choice(wrong + [dodge])
        record.update(chosen=good, rejected=rejected, chosen_model="synthetic-good",
                      rejected_model="synthetic-good" if subtype == "same" else "synthetic-weak",
                      candidates=None, candidates_model=None, candidates_score=None)
    else:
        n = int(subtype)
        cands = [good] + (wrong + [dodge])[:n - 1]
        record.update(chosen=None, rejected=None, chosen_model=None, rejected_model=None,
                      candidates=cands, candidates_model=[f"synthetic-{k}" for k in range(n)],
                      candidates_score=[float(10 - 3 * k) for k in range(n)])
    return record


def generate_config(config: str, n_pair: int, n_bon: int, *, seed: int = 0,
                    context_words: dict[str, int] | None = None) -> Iterator[dict]:
    """Yield ``n_pair`` PairWise then ``n_bon`` BestOfN records for ``config``.

    Length buckets cycle through 4k..128k; ``context_words`` maps a bucket to
    the context size in words (default: the bucket's real size).
    """
    rng = random.Random(f"{seed}:{config}")
    words = context_words or {b: int(t * WORDS_PER_TOKEN) for b, t in BUCKET_TOKENS.items()}
    for i in range(n_pair):
        bucket = LENGTH_BUCKETS[i % len(LENGTH_BUCKETS)]
        yield _item(rng, config, i, "PairWise", PAIR_SUBTYPES[i % 2], bucket, words[bucket])
    for j in range(n_bon):
        bucket = LENGTH_BUCKETS[j % len(LENGTH_BUCKETS)]
        yield _item(rng, config, n_pair + j, "BestOfN", str(2 + j % 3), bucket, words[bucket])


def generate_benchmark(scale: float = 1.0, *, seed: int = 0, context_words: dict[str, int] | None = None,
                       configs=CONFIGS) -> dict[str, list[dict]]:
    """Records for every config, counts = real counts x ``scale`` (at least 1 of each kind present)."""
    out = {}
    for config in configs:
        n_pair, n_bon = REAL_COUNTS[config]
        n_pair = max(1, round(n_pair * scale)) if n_pair else 0
        n_bon = max(1, round(n_bon * scale)) if n_bon else 0
        out[config] = list(generate_config(config, n_pair, n_bon, seed=seed, context_words=context_words))
    return out
