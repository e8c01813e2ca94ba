"""The training samples bundled with the package — SYNTHETIC, generated here, not the authors' data.

``sample:sft`` (Stage I: a judge prompt and the judgment to learn) and
``sample:alignment`` (Stage II: the same prompts with one chosen and four
rejected judgments, the LongRM authors' record layout) let
``longrm train --config recipes/tiny_cpu.yaml`` run from a clean clone or a
wheel with no download. Each record hides one fact inside a key passage tagged
``<TAG> ... </TAG>`` (the tag varies per record, as in the authors' data) in a
few hundred words of filler, asks about it, and shows a response to score;
the chosen judgment's analysis and score agree with the passage, each rejected
one is inconsistent (wrong verdict, or an analysis that contradicts its own
score). Every record says ``"source": "synthetic"``.

Regenerate (deterministic): ``python -m longrm_tasks.train.sample.generate``.
"""
from __future__ import annotations

import random
from pathlib import Path

SAMPLE_DIR = Path(__file__).parent
SAMPLES = {"sft": "sft.jsonl", "alignment": "alignment.jsonl"}
RECORDS = 20
SEED = 2510
NUM_REJECTED = 4

_WORDS = ("river archive harbor lantern meadow signal quarry ledger orbit canyon ember tundra compass vessel "
          "mosaic beacon thicket summit glacier prairie cipher anchor falcon orchard council season market "
          "bridge tower garden station letter journey winter morning evening village").split()
_GLUE = "the of and a to in was for on that with as by at from".split()
_PEOPLE = ("Alder", "Brinn", "Corvo", "Delmar", "Esker", "Fenwick", "Galen", "Harrow", "Isolde", "Jorund")
_THINGS = ("lantern", "ledger", "compass", "kettle", "banner", "violin", "telescope", "satchel")
_PLACES = ("attic", "boathouse", "cellar", "greenhouse", "workshop", "library", "stable", "tower")
_COLOURS = ("amber", "cobalt", "crimson", "ivory", "jade", "scarlet", "silver", "violet")
_TAGS = ("LD", "Q9", "465D", "K2", "X7", "PA")

SYSTEM = (
    "You are an expert judge of answers to questions about long documents. You will receive a long context "
    "that holds useful clues and irrelevant text, a question about the part between <{tag}> and </{tag}>, and "
    "a model response. Assess the response against that part of the context:\n"
    "(1) Correctness: does it answer the question as the context says?\n"
    "(2) Relevance: does it ignore distracting details?\n"
    "(3) Clarity: is it short and clear?\n\n"
    "Answer in this format:\n[Analysis]\n{{your analysis}}\n[Score: {{an integer between 0 and 10}}]"
)


def sample_path(name: str) -> Path:
    """The bundled file for ``sample:NAME`` (``sft`` or ``alignment``)."""
    return SAMPLE_DIR / SAMPLES[name]


def _filler(rng: random.Random, words: int) -> str:
    sentences, count = [], 0
    while count < words:
        n = rng.randint(8, 16)
        body = [rng.choice(_WORDS if i % 2 == 0 else _GLUE) for i in range(n)]
        sentences.append(" ".join(body).capitalize() + ".")
        count += n
    # Paragraphs of ~5 sentences, like real documents (the key passage sits between two of them).
    return "\n\n".join(" ".join(sentences[i:i + 5]) for i in range(0, len(sentences), 5))


def _judgment(analysis: str, score: int) -> str:
    return f"[Analysis]\n{analysis}\n[Score: {score}]"


# Judgments of a response that gives the fact right (``_CORRECT``) or wrong (``_WRONG``): the chosen
# text, its score range, and the rejected (text, score) pairs; ``{says}`` is the reading of the passage.
_CORRECT = {
    "score": (8, 10),
    "chosen": "{says} The response says {answer}, which matches the context. It ignores the unrelated text and "
              "answers in one clear sentence.",
    "rejected": (
        ("The response says {answer}, but the context does not support this. It is wrong.", 2),
        ("{says} The response matches it exactly and is clear.", 3),  # analysis contradicts score
        ("The response is vague and never answers the question.", 1),
        ("The context says the {thing} is {wrong}, so the answer {answer} is incorrect.", 4),
    ),
}
_WRONG = {
    "score": (0, 2),
    "chosen": "{says} The response says {wrong}, which contradicts the context, so it answers the question "
              "wrongly although it is short and clear.",
    "rejected": (
        ("The response says {wrong}, which matches the context. It is correct and concise.", 9),
        ("{says} The response says {wrong}, which is wrong.", 8),  # analysis contradicts score
        ("The response answers the question clearly and is relevant.", 7),
        ("The context never mentions the {thing}, so any colour is acceptable.", 6),
    ),
}


def _record(rng: random.Random, index: int) -> dict:
    person, thing, place = rng.choice(_PEOPLE), rng.choice(_THINGS), rng.choice(_PLACES)
    colour, wrong = rng.sample(_COLOURS, 2)
    tag = _TAGS[index % len(_TAGS)]
    fact = f"The {thing} that {person} keeps in the {place} is {colour}."
    question = f"What colour is the {thing} that {person} keeps in the {place}?"
    correct = index % 2 == 0
    answer = colour if correct else wrong
    response = f"The {thing} that {person} keeps in the {place} is {answer}."
    words = rng.randint(300, 900)
    depth = rng.choice((0.1, 0.3, 0.5, 0.7, 0.9))
    before, after = _filler(rng, int(words * depth)), _filler(rng, words - int(words * depth))
    context = f"{before}\n\n<{tag}>\n{fact}\n</{tag}>\n\n{after}"
    user = (f"<context>\n{context}\n</context>\n\n<prompt>\n{question}\n</prompt>\n\n"
            f"The following is the given response to evaluate.\n<response>\n{response}\n</response>\n")
    says = f"The passage between <{tag}> and </{tag}> says the {thing} is {colour}."
    # The chosen judgment agrees with the context; each rejected one is inconsistent in its own way
    # (wrong reading, analysis that contradicts its score, no reading, invented reading).
    table = _CORRECT if correct else _WRONG
    score = rng.randint(*table["score"])
    fields = {"says": says, "answer": answer, "wrong": wrong, "thing": thing}
    chosen = _judgment(table["chosen"].format(**fields), score)
    rejected = [_judgment(text.format(**fields), points) for text, points in table["rejected"]]
    messages = [{"role": "system", "content": SYSTEM.format(tag=tag)}, {"role": "user", "content": user}]
    return {
        "source": "synthetic", "split": "train", "messages": messages, "chosen": chosen,
        "rejected": rejected[:NUM_REJECTED], "query": question, "answer": colour,
        "key_passage_position": depth, "response_correct": correct,
    }


def generate(records: int = RECORDS, seed: int = SEED) -> dict[str, list[dict]]:
    """``{"alignment": Stage II records, "sft": the same prompts with the chosen judgment as the answer}``."""
    rng = random.Random(seed)
    alignment = [_record(rng, i) for i in range(records)]
    sft = [{"source": "synthetic", "messages": r["messages"] + [{"role": "assistant", "content": r["chosen"]}]}
           for r in alignment]
    return {"alignment": alignment, "sft": sft}


def main() -> None:
    from longrm_tasks.atomic import write_jsonl

    for name, rows in generate().items():
        write_jsonl(sample_path(name), rows)
        print(sample_path(name).name, len(rows))


if __name__ == "__main__":
    main()
