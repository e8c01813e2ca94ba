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
from longrm_tasks.data.provenance import Provenance
from longrm_tasks.prompts.orders import assign_paper_orders
from longrm_tasks.paths import file_problem, require_regular_file

SAMPLE_DIR = Path(__file__).with_name("sample")
HUB_TIMEOUT_S = 10  # one request to learn the commit; no network must not cost half a minute of retries


@dataclass
class Benchmark:
    """Validated items plus what loading noticed (files read, non-fatal warnings)."""

    items: list[Item]
    files: dict[str, str] = field(default_factory=dict)  # config -> path read
    warnings: list[str] = field(default_factory=list)
    source: str = ""
    provenance: Provenance = field(default_factory=lambda: Provenance(source=""))


def load_config_file(path: str | os.PathLike, config: str, warnings: list[str] | None = None) -> list[Item]:
    """Validate every record of one config file and give each its paper order; an empty file is an error."""
    path = require_regular_file(path)
    items = [validate_record(raw, config=config, index=i, path=path, line=lineno, warnings=warnings)
             for i, (lineno, raw) in enumerate(iter_jsonl(path))]
    if not items:  # a 0-byte or blank file is a broken download or copy, not "0 items valid"
        raise InputError(f"empty file: no records for config {config}", path=path)
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


_OFFLINE_VALUES = {"1", "ON", "YES", "TRUE"}
WAY_OUT = "pass data_dir=sample (the bundled offline sample) or a folder of {Config}.jsonl files"


def _hub_offline() -> bool:
    """HF_HUB_OFFLINE as huggingface_hub reads it, or as set after huggingface_hub was imported."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE) or os.environ.get("HF_HUB_OFFLINE", "").upper() in _OFFLINE_VALUES


def _resolve_hub_revision(revision: str | None) -> tuple[str | None, str | None]:
    """Ask the hub, once and with a short timeout, which commit ``revision`` (default main) is.

    Returns ``(commit sha, None)``, or ``(None, why)`` when the hub cannot be
    reached (the caller then falls back to the local cache). A missing revision or
    dataset is an error straight away. One cheap request instead of letting each
    download retry for half a minute when there is no network.
    """
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    if _hub_offline():
        return None, "HF_HUB_OFFLINE is set"
    try:
        return HfApi().dataset_info(HUB_DATASET, revision=revision, timeout=HUB_TIMEOUT_S).sha, None
    except RevisionNotFoundError:
        raise InputError(f"revision {revision!r} not found in the hub dataset {HUB_DATASET}",
                         field="revision") from None
    except RepositoryNotFoundError:
        raise InputError(f"the hub dataset {HUB_DATASET} was not found; {WAY_OUT}") from None
    except Exception as err:  # connection, DNS, timeout, proxy and 5xx errors come in many types
        first = str(err).splitlines()[0] if str(err) else ""
        return None, f"the hub cannot be reached ({type(err).__name__}: {first[:120]})"


def _snapshot_commit(path: str) -> str | None:
    """The commit of a file in the hub cache (``.../snapshots/<commit>/<file>``)."""
    parent = Path(path).parent
    return parent.name if parent.parent.name == "snapshots" else None


def _hub_files(configs: list[str], revision: str | None) -> tuple[dict[str, str], str | None]:
    """Download (or find in the cache) ``{config}.jsonl`` for each config; return paths and the commit read.

    Online, every file is read at the one commit the hub named for ``revision``,
    so the configs cannot come from two versions of the dataset. Offline or
    unreachable, the cached snapshot is used when it holds every file; else one
    line says what failed and the way out.
    """
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as err:  # pragma: no cover - hf extra missing
        raise InputError(f"loading from the hub needs `pip install longrm-tasks[hf]`; {WAY_OUT}") from err
    commit, offline_reason = _resolve_hub_revision(revision)
    paths: dict[str, str] = {}
    for config in configs:
        name = f"{config}.jsonl"
        try:
            if commit is not None:
                paths[config] = hf_hub_download(HUB_DATASET, name, repo_type="dataset", revision=commit)
            else:
                paths[config] = hf_hub_download(HUB_DATASET, name, repo_type="dataset", revision=revision,
                                                local_files_only=True)
        except Exception as err:  # network and cache errors come in many types; the message is what matters
            if commit is None:
                raise InputError(f"{offline_reason}, and {name} of the hub dataset {HUB_DATASET} "
                                 f"(revision {revision or 'main'}) is not in the local cache; {WAY_OUT}") from None
            first = str(err).splitlines()[0] if str(err) else ""
            raise InputError(f"cannot download {name} from the hub dataset {HUB_DATASET} at {commit} "
                             f"({type(err).__name__}: {first[:200]}); {WAY_OUT}") from None
    if commit is None:  # read from the cache: the snapshot folder names the commit
        commits = {_snapshot_commit(p) for p in paths.values()}
        commit = commits.pop() if len(commits) == 1 else None
    return paths, commit


def _folder_files(folder: Path, configs: list[str], required: bool) -> dict[str, Path]:
    """``{Config}.jsonl`` per config in ``folder``; a file that looks like one but is misnamed is an error.

    ``summ.jsonl`` or ``Cite.JSONL`` next to valid files would otherwise be
    skipped without a word (and on a case-insensitive file system read or not
    depending on the machine).
    """
    # Every entry, not only regular files: a FIFO, folder or dangling link named LongQA.jsonl is
    # refused below by name instead of being skipped (which silently drops a whole config).
    names = {p.name: p for p in folder.iterdir()}
    found: dict[str, Path] = {}
    for config in configs:
        expected = f"{config}.jsonl"
        lookalikes = sorted(n for n in names if n != expected and "." in n and not names[n].is_dir()
                            and n.split(".", 1)[0].casefold() == config.casefold()
                            and n.split(".", 1)[1].casefold() in ("jsonl", "json"))
        if lookalikes:
            raise InputError(f"{', '.join(lookalikes)} looks like config {config} but is misnamed: "
                             f"name it {expected} (names are case-sensitive)", path=str(folder / lookalikes[0]))
        if expected in names:
            require_regular_file(names[expected])
            found[config] = names[expected]
        elif required:
            raise InputError(f"no file for config {config}: {(folder / expected).resolve()} does not exist",
                             field="configs")
    return found


def resolve_data_dir(data: str | os.PathLike) -> Path | None:
    """``hub`` -> None; ``sample`` -> the bundled sample; anything else is a folder (relative to CWD)."""
    data = os.fspath(data)
    if data == "hub":
        return None
    if data == "sample":
        return SAMPLE_DIR
    path = Path(data).expanduser()
    if not path.is_dir():
        problem = file_problem(path)  # stat only; a FIFO or broken link is named for what it is
        if problem == "file not found":
            raise InputError(f"data folder not found: {path.resolve()}", field="data_dir")
        what = "is a file" if problem is None else problem.replace(", expected a regular file", "")
        raise InputError(f"{what}, expected a folder of {{Config}}.jsonl files", path=str(path), field="data_dir")
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
    source = "hub" if folder is None else ("sample" if folder == SAMPLE_DIR else os.fspath(data))
    bench = Benchmark(items=[], source="hub" if folder is None else str(folder), provenance=Provenance(source))
    if folder is None:
        paths, bench.provenance.revision = _hub_files(wanted or list(CONFIGS), revision)
    else:
        paths = _folder_files(folder, wanted or list(CONFIGS), required=wanted is not None)
    for config, path in paths.items():
        bench.items.extend(load_config_file(path, config, bench.warnings))
        bench.files[config] = str(path)
        bench.provenance.add_file(path)
    if not bench.files:
        raise InputError(f"no {{Config}}.jsonl files ({', '.join(CONFIGS)}) in {folder}", field="data_dir")
    return bench
