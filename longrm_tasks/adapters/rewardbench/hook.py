"""Run Long-RewardBench with RewardBench's own tools: ``rewardbench`` (pairs) and ``scripts.run_v2`` (best-of-N).

``activate()`` teaches both, at run time, a dataset name::

    long-rewardbench[:DATA][?configs=LongQA,Summ&lengths=4k,8k&subtypes=same]

(DATA = ``hub`` (default), ``sample`` or a folder of ``{Config}.jsonl``; the hub
id ``LCM-Lab/LongRewardBench`` works too) and long-context defaults: when the
user kept the tool's default ``--max_length`` (512 for ``rewardbench``, 2048 for
``run_v2``) it becomes ``$LONGRM_MAX_LENGTH`` or 131,072 (the paper's limit),
and every scored text longer than that loses the middle of its context —
head and tail kept, the answer always whole (``longrm_tasks.context.truncation``) —
instead of RewardBench's left/right cut (which would drop the task
instructions or the answer). The number of truncated texts is printed.

Cost and safety: when ``rewardbench`` is not installed, ``activate()`` is one
``find_spec`` call and returns False. Otherwise it patches nothing until
``rewardbench.rewardbench`` / ``scripts.run_v2`` are imported (a meta-path
hook wraps their loading), and it only changes what they do for our dataset
names. ``LONGRM_REWARDBENCH_HOOK=0`` turns it off.

Ways in: the package's start-up ``.pth`` hook (plain ``rewardbench`` sees our
dataset), or explicitly ``python -m longrm_tasks.adapters.rewardbench.hook
rewardbench ARGS`` (or ``run_v2 ARGS``), which works with the start-up hook off.
"""
from __future__ import annotations

import importlib.util
import os
import sys

ENV_SWITCH = "LONGRM_REWARDBENCH_HOOK"
ENV_MAX_LENGTH = "LONGRM_MAX_LENGTH"
DATASET_NAME = "long-rewardbench"
HUB_ALIAS = "LCM-Lab/LongRewardBench"
DEFAULT_MAX_LENGTH = 131_072  # longrm_tasks.context.truncation.PAPER_LIMIT (not imported: keep start-up free)
TOOL_DEFAULT_MAX_LENGTH = {"rewardbench": 512, "run_v2": 2048}

_state = {"max_length": None}


def parse_dataset(name) -> dict | None:
    """``long-rewardbench[:DATA][?filters]`` -> {data, configs, tasktypes, subtypes, lengths}; None if not ours."""
    if not isinstance(name, str):
        return None
    if name == HUB_ALIAS:
        name = DATASET_NAME
    head, _, query = name.partition("?")
    if head != DATASET_NAME and not head.startswith(DATASET_NAME + ":"):
        return None
    from urllib.parse import parse_qs

    spec = {"data": head[len(DATASET_NAME) + 1:] or "hub"}
    for key, values in parse_qs(query).items():
        if key not in ("configs", "tasktypes", "subtypes", "lengths"):
            raise ValueError(f"{name}: unknown filter {key!r} (configs, tasktypes, subtypes, lengths)")
        spec[key] = ",".join(values)
    return spec


def max_length(tool: str | None = None, given: int | None = None) -> int:
    """The token budget: the user's --max_length unless it is the tool's default, then ours."""
    if given is not None and tool is not None and given != TOOL_DEFAULT_MAX_LENGTH[tool]:
        return given
    return int(os.environ.get(ENV_MAX_LENGTH) or _state["max_length"] or DEFAULT_MAX_LENGTH)


# ---------------------------------------------------------------- data and truncation

def export_for(spec: dict, tasktype: str):
    """Export the selected items of one task type to a temporary folder; -> (path, records)."""
    import atexit
    import shutil
    import tempfile

    from longrm_tasks.adapters.rewardbench.export import RB1_FILE, RB2_FILE, export_items, read_export
    from longrm_tasks.data import load_benchmark, select

    configs = spec.get("configs", "").split(",") if spec.get("configs") else None
    bench = load_benchmark(spec["data"], configs=configs)
    items = select(bench.items, tasktypes=[tasktype], subtypes=spec.get("subtypes"), lengths=spec.get("lengths"))
    if not items:
        raise ValueError(f"Long-RewardBench selection {spec} has no {tasktype} items")
    out = tempfile.mkdtemp(prefix="longrm-rewardbench-")
    atexit.register(shutil.rmtree, out, ignore_errors=True)
    export_items(items, out, source=bench.source)
    key, name = ("rewardbench1", RB1_FILE) if tasktype == "PairWise" else ("rewardbench2", RB2_FILE)
    return os.path.join(out, name), read_export(out)[key]


def fit_text(tokenizer, text: str, answer: str, budget: int) -> tuple[str, int]:
    """Cut the middle of ``text`` so the tokenizer's encoding (special tokens included, as the
    pipeline encodes it) fits ``budget``; the ``answer`` and what follows it stay whole.
    -> (text, tokens dropped)."""
    from longrm_tasks.context.fitting import middle_span

    room = budget - tokenizer.num_special_tokens_to_add()
    encode = lambda s: tokenizer(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    ids = encode(text)
    if len(ids) <= room:
        return text, 0
    start = text.rfind(answer) if answer else -1
    protect = len(encode(text[start:])) + 1 if start >= 0 else 0  # +1: a token may straddle the seam
    if protect > room:
        raise ValueError(f"max_length {budget} cannot hold the answer and what follows it ({protect} tokens); "
                         f"raise --max_length or {ENV_MAX_LENGTH}")
    target = room
    for _ in range(4):  # decoding then re-encoding can merge tokens differently at the cut
        kept = middle_span(len(ids), target, protect_tail=min(protect, target)).apply(ids)  # the fit rule
        out = tokenizer.decode(kept, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        n = len(encode(out))
        if n <= room:
            return out, len(ids) - n
        target -= n - room
    raise ValueError(f"cannot fit a text of {len(ids)} tokens into {budget}")


def fit_column(dataset, column: str, answers, tokenizer, budget: int):
    """Apply `fit_text` to one text column of a `datasets.Dataset`; -> (dataset, texts truncated)."""
    texts, cut = [], 0
    for text, answer in zip(dataset[column], answers):
        new, dropped = fit_text(tokenizer, text, answer, budget)
        texts.append(new)
        cut += dropped > 0
    if cut:
        dataset = dataset.remove_columns(column).add_column(column, texts)
    return dataset, cut


def _report(tool: str, n: int, budget: int, cut: int) -> None:
    print(f"[longrm] {tool}: Long-RewardBench, {n} texts, max_length {budget}: {cut} truncated "
          f"(middle of the context dropped, head and answer kept)", file=sys.stderr)


# ---------------------------------------------------------------- patches

def _patch_rewardbench_cli(module) -> None:
    """``rewardbench.rewardbench``: our dataset names in ``load_and_process_dataset``, long max_length."""
    # The run function behind main(): `rewardbench` in the 0.1.4 release, `actual_main` in later sources.
    run_name = "rewardbench" if callable(getattr(module, "rewardbench", None)) else "actual_main"
    original_load, original_run = module.load_and_process_dataset, getattr(module, run_name)

    def load_and_process_dataset(dataset_name, *args, **kwargs):
        spec = parse_dataset(dataset_name)
        if spec is None:
            return original_load(dataset_name, *args, **kwargs)
        path, _records = export_for(spec, "PairWise")
        kwargs["json"] = True
        from longrm_tasks import compat

        pos = compat.rewardbench_loader_args()  # RewardBench's positional layout, version-checked
        if len(args) > pos.json:  # (split, json, conv, tokenizer, ...) positionally: keep all but json
            args = args[:pos.json] + (True,) + tuple(args[pos.json + 1:])
            kwargs.pop("json")
        dataset = original_load(path, *args, **kwargs)
        tokenizer = kwargs.get("tokenizer", args[pos.tokenizer] if len(args) > pos.tokenizer else None)
        budget = max_length()
        dataset, cut_c = fit_column(dataset, "text_chosen", dataset["chosen"], tokenizer, budget)
        dataset, cut_r = fit_column(dataset, "text_rejected", dataset["rejected"], tokenizer, budget)
        _report("rewardbench", 2 * len(dataset), budget, cut_c + cut_r)
        return dataset

    def run(args):
        if parse_dataset(args.dataset) is not None:
            args.max_length = _state["max_length"] = max_length("rewardbench", args.max_length)
        return original_run(args)

    module.load_and_process_dataset = load_and_process_dataset
    setattr(module, run_name, run)
    module._longrm_hooked = True


def _patch_run_v2(module) -> None:
    """``scripts.run_v2`` (RewardBench 2): our dataset names in ``load_bon_dataset_v2``, long max_length."""
    if not hasattr(module, "load_bon_dataset_v2"):  # some other top-level `scripts` package
        return
    original_load, original_args = module.load_bon_dataset_v2, module.get_args

    def load_bon_dataset_v2(dataset, *args, **kwargs):
        spec = parse_dataset(dataset)
        if spec is None:
            return original_load(dataset, *args, **kwargs)
        path, records = export_for(spec, "BestOfN")
        data, subsets, total, correct = original_load(path, *args, **kwargs)
        answers = [a for rec in records for a in rec["chosen"] + rec["rejected"]]  # the loader's unrolled order
        budget = max_length()
        data, cut = fit_column(data, "text", answers, kwargs.get("tokenizer"), budget)
        _report("run_v2", len(data), budget, cut)
        return data, subsets, total, correct

    def get_args():
        args = original_args()
        if parse_dataset(args.dataset) is not None:
            args.max_length = _state["max_length"] = max_length("run_v2", args.max_length)
        return args

    module.load_bon_dataset_v2 = load_bon_dataset_v2
    module.get_args = get_args
    module._longrm_hooked = True


_PATCHES = {"rewardbench.rewardbench": _patch_rewardbench_cli, "scripts.run_v2": _patch_run_v2}


def on_import(module) -> None:
    """Run by the start-up watcher (``longrm_tasks_hook``) right after RewardBench loads ``module``."""
    if os.environ.get(ENV_SWITCH, "1") == "0" or getattr(module, "_longrm_hooked", False):
        return
    if module.__name__ == "scripts.run_v2" and not hasattr(module, "load_bon_dataset_v2"):
        return  # another project's `scripts` package, not RewardBench's
    _PATCHES[module.__name__](module)


def activate() -> bool:
    """Hook into RewardBench if it is installed (and the switch is not 0). Never raises."""
    try:
        if os.environ.get(ENV_SWITCH, "1") == "0":
            return False
        if "rewardbench" not in sys.modules and importlib.util.find_spec("rewardbench") is None:
            return False
        for name in _PATCHES:
            if name in sys.modules:
                on_import(sys.modules[name])
        import longrm_tasks_hook  # the one import watcher of the package (also behind the .pth)

        longrm_tasks_hook.install(names=_PATCHES, force=True)
        return True
    except Exception as err:  # a start-up hook must never break the interpreter
        print(f"[longrm] RewardBench hook disabled: {type(err).__name__}: {err}", file=sys.stderr)
        return False


TOOLS = {"rewardbench": "rewardbench.rewardbench", "run_v2": "scripts.run_v2"}


def main(argv: list[str] | None = None) -> int:
    """``python -m longrm_tasks.adapters.rewardbench.hook {rewardbench|run_v2} ARGS...``"""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in TOOLS:
        print(f"usage: python -m {__spec__.name if __spec__ else 'hook'} {{{'|'.join(TOOLS)}}} ARGS...",
              file=sys.stderr)
        return 2
    if not activate():
        print("[longrm] rewardbench is not installed in this Python (or LONGRM_REWARDBENCH_HOOK=0)", file=sys.stderr)
        return 2
    tool, rest = argv[0], argv[1:]
    module = importlib.import_module(TOOLS[tool])
    sys.argv = [tool] + rest
    return int(module.main() or 0)


if __name__ == "__main__":
    sys.exit(main())
