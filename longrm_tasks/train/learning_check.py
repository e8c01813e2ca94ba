"""Learning check: does `longrm train` teach a model to prefer answers that agree with a long context?

Synthetic long-context preference task: a fact ("the answer is 7") hidden at a
random depth of a distractor context; the question asks for it; the chosen
response gives the value stated in the context, each rejected response a
different value. Values are drawn per item, so nothing can be memorised: the
model has to find the fact in the context. Held-out pairwise accuracy is the
fraction of held-out (chosen, rejected) pairs that the model ranks correctly:

* discriminative path (``reward`` stage): by the scalar reward;
* generative path (``sft`` -> ``alignment``): by the length-normalised
  log-probability of the response given the prompt.

Chance is 50 %. `run_check` trains through the real ``longrm train`` command
on a recipe it writes, and measures accuracy before and after.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from longrm_tasks.atomic import write_jsonl as write_jsonl_atomically
from longrm_tasks.atomic import write_text

# Single tokens of `longrm_tasks.testing.build_tokenizer` (with their leading space), so the
# fact and the answer are the same token wherever they appear.
VALUES = [" 1", " 2", " 3", " 4", " 5", " 6", " 7", " 8", " 9"]
FILLER = ("the quick brown fox jumps over lazy dog and to of that for it with as in long context document "
          "model user judge quality reward question answer responses assistant evaluate impartial").split()
FACT = " the answer is{value} ."
QUESTION = " Question : what is the answer ?"


@dataclass
class CheckSettings:
    path: str = "generative"  # or "discriminative"
    train_items: int = 1024
    heldout_items: int = 100
    context_words: int = 100  # held-out contexts, and the longest training contexts
    # Training contexts are drawn between this and `context_words` (None: all `context_words`).
    # Short contexts teach the lookup quickly; the held-out set then measures whether it holds at
    # the full length — the paper's short-to-long idea in miniature.
    min_context_words: int | None = None
    num_rejected: int = 1
    seed: int = 0
    epochs: float = 4.0
    learning_rate: float = 3e-3
    batch_size: int = 16
    hidden: int = 64
    # One layer suffices (attend to the only value token in the context, copy it); with 8 heads
    # the loss leaves its plateau after ~100-150 steps, with 2 layers or 4 heads about twice later.
    layers: int = 1
    heads: int = 8
    alignment_epochs: float = 0.25
    # Matrices this small gain nothing from intra-op threads, and on a busy machine OpenMP
    # threads that spin-wait for a shared core make each step ~20x slower.
    torch_threads: int = 1


def make_items(n: int, *, context_words: int, num_rejected: int, rng: random.Random,
               min_context_words: int | None = None) -> list[dict]:
    """Records in the LongRM Stage II format (``messages``, ``chosen``, ``rejected`` list); contexts of
    ``context_words`` filler words, or a uniform draw from [``min_context_words``, ``context_words``]."""
    items = []
    for _ in range(n):
        value, *wrong = rng.sample(VALUES, 1 + num_rejected)
        length = context_words if min_context_words is None else rng.randint(min_context_words, context_words)
        words = [" " + rng.choice(FILLER) for _ in range(length)]
        words.insert(rng.randrange(length + 1), FACT.format(value=value))
        items.append({"messages": [{"role": "user", "content": "".join(words) + QUESTION}],
                      "chosen": value, "rejected": wrong, "fact_value": value})
    return items


def write_jsonl(path: Path, items: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl_atomically(path, items)
    return path


def _pairs(items: list[dict]):
    for item in items:
        for rejected in item["rejected"]:
            yield item, item["chosen"], rejected


def pairwise_accuracy(model_dir: str | Path, items: list[dict], path: str) -> float:
    """Fraction of held-out (chosen, rejected) pairs ranked correctly by the model in ``model_dir``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    from longrm_tasks.train.long_inputs import encode

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if path == "discriminative":
        model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1)
    else:
        model = AutoModelForCausalLM.from_pretrained(model_dir)
    model.eval()

    def score(prompt, response) -> float:
        # rendered as each stage trains and as the evaluation asks: a scalar RM scores the whole
        # conversation, a judge generates after the evaluation prompt (long_inputs.encode)
        rendering = "conversation" if path == "discriminative" else "generation"
        (enc,) = encode(tokenizer, prompt, [[{"role": "assistant", "content": response}]], rendering=rendering)
        ids = torch.tensor([enc.ids])
        with torch.no_grad():
            if path == "discriminative":
                return model(input_ids=ids).logits[0, 0].item()
            logits = model(input_ids=ids).logits[0, :-1].float()
            logps = torch.log_softmax(logits, -1).gather(-1, ids[0, 1:, None])[:, 0]
            return logps[enc.prompt_len - 1:].mean().item()  # response tokens only, length-normalised

    correct = total = 0
    for item, chosen, rejected in _pairs(items):
        correct += score(item["messages"], chosen) > score(item["messages"], rejected)
        total += 1
    return correct / total


def recipe_for(settings: CheckSettings, base_model: Path, train_file: Path) -> dict:
    common = {"max_length": 4 * settings.context_words + 256, "per_device_train_batch_size": settings.batch_size,
              "num_train_epochs": settings.epochs, "learning_rate": settings.learning_rate,
              "lr_scheduler_type": "constant", "logging_steps": 10, "save_strategy": "no", "bf16": False,
              "activation_checkpointing": False, "use_cpu": True, "seed": settings.seed,
              "disable_tqdm": True}
    if settings.path == "discriminative":
        stages = [{"name": "reward", "kind": "reward", "data": str(train_file)}]
    else:
        stages = [{"name": "sft", "kind": "sft", "data": str(train_file)},
                  {"name": "alignment", "kind": "alignment", "data": str(train_file),
                   "args": {"num_rejected": settings.num_rejected, "num_train_epochs": settings.alignment_epochs,
                            "learning_rate": settings.learning_rate / 3}}]
    return {"name": f"learning_check_{settings.path}", "base_model": str(base_model), "defaults": common,
            "stages": stages}


def run_check(workdir: str | Path, settings: CheckSettings = CheckSettings()) -> dict:
    """Build the task and a tiny model, train with ``longrm train``, return accuracies before/after."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(settings.torch_threads)
    try:
        return _run_check(Path(workdir).resolve(), settings)
    finally:
        torch.set_num_threads(threads)


def _run_check(workdir: Path, settings: CheckSettings) -> dict:
    import yaml

    from longrm_tasks.cli import main as longrm
    from longrm_tasks.testing import save_tiny_model

    rng = random.Random(settings.seed)
    kw = {"context_words": settings.context_words, "num_rejected": settings.num_rejected, "rng": rng}
    train = make_items(settings.train_items, min_context_words=settings.min_context_words, **kw)
    heldout = make_items(settings.heldout_items, **kw)  # all at the full length
    train_file = write_jsonl(workdir / "train.jsonl", train)
    kind = "seq-cls" if settings.path == "discriminative" else "causal"
    base = save_tiny_model(workdir / "base-model", kind=kind, hidden=settings.hidden, layers=settings.layers,
                           heads=settings.heads, kv_heads=settings.heads, seed=settings.seed)
    before = pairwise_accuracy(base, heldout, settings.path)
    recipe = workdir / "recipe.yaml"
    write_text(recipe, yaml.safe_dump(recipe_for(settings, base, train_file), sort_keys=False))
    status = longrm(["train", "--config", str(recipe), "--output-dir", str(workdir / "runs")])
    if status:
        raise RuntimeError(f"longrm train exited with {status}")
    final = workdir / "runs" / ("reward" if settings.path == "discriminative" else "alignment")
    after = pairwise_accuracy(final, heldout, settings.path)
    return {"path": settings.path, "heldout_pairs": sum(len(i["rejected"]) for i in heldout),
            "train_items": settings.train_items, "context_words": settings.context_words,
            "min_context_words": settings.min_context_words,
            "accuracy_before": before, "accuracy_after": after}
