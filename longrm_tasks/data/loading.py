"""Load Long-RewardBench from the hub, a local folder, or the bundled sample.

All three sources are read the same way: one ``{Config}.jsonl`` file per
config, validated record by record, paper orders assigned per whole file (so
they match the reference evaluator whatever is selected afterwards).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from longrm_tasks import HUB_DATASET
from longrm_tasks.data.schema import CONFIGS, Item, validate_record
from longrm_tasks.errors import InputError
from longrm_tasks.jsonl import iter_jsonl
from longrm_tasks.orders import assign_paper_orders

SAMPLE_DIR = Path(__file__).with_name("sample")


@dataclass
class Benchmark:
    """Validated items plus what loading noticed (files read, non-fatal warnings)."""

    items: list[Item]
    files: dict[str, str] = field(default_factory=dict)  # config -> path read
    warnings: list[str] = field(default_factory=list)
    source: str = ""


def load_config_file(path: str | os.PathLike, config: str, warnings: list[str] | None = None) -> list[Item]:
    """Validate every record of one config file and give each its paper order."""
    path = os.fspath(path)
    items = [validate_record(raw, config=config, index=i, path=path, line=lineno, warnings=warnings)
             for i, (lineno, raw) in enumerate(iter_jsonl(path))]
    assign_paper_orders(items)
    return items


def _check_configs(configs: Iterable[str] | None) -> list[str] | None:
    if configs is None:
        return None
    configs = list(configs)
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        raise InputError(f"unknown config(s) {', '.join(unknown)}; known: {', '.join(CONFIGS)}", field="configs")
    return configs


def _hub_file(config: str, revision: str | None) -> str:
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as err:  # pragma: no cover - hf extra missing
        raise InputError("loading from the hub needs `pip install longrm-tasks[hf]`") from err
    try:
        return hf_hub_download(HUB_DATASET, f"{config}.jsonl", repo_type="dataset", revision=revision)
    except Exception as err:  # network errors come in many types; the message is what matters
        raise InputError(
            f"cannot download {config}.jsonl from the hub dataset {HUB_DATASET} ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}); pass a local folder of {{Config}}.jsonl "
            f"files, or 'sample' for the bundled offline sample") from None


def resolve_data_dir(data: str | os.PathLike) -> Path | None:
    """``hub`` -> None; ``sample`` -> the bundled sample; anything else is a folder (relative to CWD)."""
    data = os.fspath(data)
    if data == "hub":
        return None
    if data == "sample":
        return SAMPLE_DIR
    path = Path(data).expanduser()
    if not path.is_dir():
        raise InputError(f"data folder not found: {path.resolve()}", field="data_dir")
    return path


def load_benchmark(data: str | os.PathLike = "hub", configs: Iterable[str] | None = None,
                   revision: str | None = None) -> Benchmark:
    """Load (a subset of configs of) Long-RewardBench.

    ``data`` is ``"hub"`` (the hub dataset), ``"sample"`` (the bundled synthetic
    sample) or a folder of ``{Config}.jsonl`` files. With ``configs=None`` a
    folder contributes every config file it has; a requested config that is
    missing is an error naming the path.
    """
    wanted = _check_configs(configs)
    folder = resolve_data_dir(data)
    bench = Benchmark(items=[], source="hub" if folder is None else str(folder))
    for config in wanted or CONFIGS:
        if folder is None:
            path = _hub_file(config, revision)
        else:
            path = folder / f"{config}.jsonl"
            if not path.is_file():
                if wanted is None:
                    continue
                raise InputError(f"no file for config {config}: {path.resolve()} does not exist", field="configs")
        bench.items.extend(load_config_file(path, config, bench.warnings))
        bench.files[config] = str(path)
    if not bench.files:
        raise InputError(f"no {{Config}}.jsonl files ({', '.join(CONFIGS)}) in {folder}", field="data_dir")
    return bench
