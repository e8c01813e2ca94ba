"""Data provenance (source, hub commit, SHA-256 per file) and loader strictness: offline hub, misnamed/empty files."""
from __future__ import annotations

import hashlib
import shutil
import time

import pytest

from longrm_tasks import HUB_DATASET
from longrm_tasks.data import CONFIGS, load_benchmark
from longrm_tasks.data.loading import SAMPLE_DIR
from longrm_tasks.data.provenance import Provenance, file_sha256
from longrm_tasks.errors import InputError

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_file_sha256_streams_the_whole_file(tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(range(256)) * 20_000)  # > 1 chunk of the streaming reader
    assert file_sha256(big) == _sha(big)


def test_sample_provenance_names_every_file_and_its_hash():
    bench = load_benchmark("sample")
    prov = bench.provenance.as_dict()
    assert prov["source"] == "sample" and prov["revision"] is None
    assert prov["files"] == {f"{c}.jsonl": _sha(SAMPLE_DIR / f"{c}.jsonl") for c in CONFIGS}
    assert Provenance.from_dict(prov) == bench.provenance


def test_folder_provenance_keeps_the_path_as_given_and_only_files_read(tmp_path, monkeypatch):
    data = tmp_path / "d"
    data.mkdir()
    shutil.copy(SAMPLE_DIR / "Math.jsonl", data / "Math.jsonl")
    shutil.copy(SAMPLE_DIR / "Code.jsonl", data / "Code.jsonl")
    monkeypatch.chdir(tmp_path)
    bench = load_benchmark("d", configs=["Math"])
    assert bench.provenance.as_dict() == {"source": "d", "revision": None,
                                          "files": {"Math.jsonl": _sha(data / "Math.jsonl")}}
    assert bench.provenance.same_data(load_benchmark("sample").provenance)  # same bytes where they overlap
    (data / "Math.jsonl").write_bytes((data / "Math.jsonl").read_bytes() + b"\n")  # blank line: other bytes
    assert not load_benchmark("d", configs=["Math"]).provenance.same_data(load_benchmark("sample").provenance)


@pytest.mark.parametrize("bad_name", ["summ.jsonl", "Cite.JSONL", "LONGQA.json"])
def test_misnamed_config_file_is_an_error_naming_it(tmp_path, bad_name):
    shutil.copy(SAMPLE_DIR / "Math.jsonl", tmp_path / "Math.jsonl")
    shutil.copy(SAMPLE_DIR / "Math.jsonl", tmp_path / bad_name)
    with pytest.raises(InputError, match=rf"{bad_name}.*misnamed.*name it \w+\.jsonl"):
        load_benchmark(str(tmp_path))


@pytest.mark.parametrize("content", [b"", b"\n  \n"])
def test_empty_config_file_is_an_error(tmp_path, content):
    shutil.copy(SAMPLE_DIR / "Math.jsonl", tmp_path / "Math.jsonl")
    (tmp_path / "Summ.jsonl").write_bytes(content)
    with pytest.raises(InputError, match=r"Summ\.jsonl: empty file"):
        load_benchmark(str(tmp_path))


def _offline(monkeypatch, cache):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))


def test_offline_hub_without_cache_fails_fast_naming_the_way_out(tmp_path, monkeypatch):
    _offline(monkeypatch, tmp_path / "empty-cache")
    start = time.monotonic()
    with pytest.raises(InputError, match=r"HF_HUB_OFFLINE.*not in the local cache.*data_dir=sample"):
        load_benchmark("hub")
    assert time.monotonic() - start < 5


def test_unreachable_hub_fails_fast(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    start = time.monotonic()
    with pytest.raises(InputError, match=r"cannot be reached.*data_dir=sample"):
        load_benchmark("hub", configs=["Math"])
    assert time.monotonic() - start < 15


def test_offline_hub_reads_the_cached_snapshot_and_names_its_commit(tmp_path, monkeypatch):
    # The layout huggingface_hub writes: refs/main holds the commit, snapshots/<commit>/ the files.
    repo = tmp_path / "cache" / f"datasets--{HUB_DATASET.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    snap = repo / "snapshots" / COMMIT
    snap.mkdir(parents=True)
    for c in CONFIGS:
        shutil.copy(SAMPLE_DIR / f"{c}.jsonl", snap / f"{c}.jsonl")
    _offline(monkeypatch, tmp_path / "cache")
    bench = load_benchmark("hub")
    assert bench.provenance.source == "hub" and bench.provenance.revision == COMMIT
    assert bench.provenance.files == load_benchmark("sample").provenance.files
    assert len(bench.items) == len(load_benchmark("sample").items)
