"""Input files for `longrm synth` tests: a distractor corpus, JSONL records, and a run killed mid-way."""
from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Iterable

WORDS = "alpha beta gamma delta river stone city market winter engine harbor violet copper".split()


def write_jsonl(path: Path, rows: Iterable[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def write_corpus(path: Path, documents: int, *, words: int = 25, stride: int = 7) -> Path:
    """``documents`` distractor texts of ``words`` words each, cycling through `WORDS` (deterministic)."""
    return write_jsonl(path, ({"text": " ".join(WORDS[(i * stride + j) % len(WORDS)] for j in range(words)) + "."}
                              for i in range(documents)))


def kill_after_records(command: list[str], out: Path, *, records: int = 3, timeout: float = 120,
                       poll: float = 0.005, **popen) -> int:
    """Start ``command`` (writing ``out``), SIGKILL it once its progress file counts ``records`` done; the count
    it had reached. Fails when the run finished before it could be killed (the test would prove nothing)."""
    from longrm_tasks.train.synth.progress import progress_path

    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **popen)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and child.poll() is None:
        try:
            if json.loads(progress_path(out).read_text())["done"] >= records:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(poll)
    child.send_signal(signal.SIGKILL)
    assert child.wait(timeout=60) == -signal.SIGKILL, "finished before it could be killed"
    return json.loads(progress_path(out).read_text())["done"]
