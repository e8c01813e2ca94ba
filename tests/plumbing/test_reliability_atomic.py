"""Outputs are replaced atomically: concurrent writers, a kill or a full disk during a write never
leave an invalid output file (``longrm score --json`` and `longrm_tasks.atomic` itself)."""
import json
import os
import resource
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from longrm_tasks.atomic import atomic_write, check_writable, write_json, write_jsonl
from longrm_tasks.errors import InputError

from project import ROOT  # noqa: E402
ENV = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONDONTWRITEBYTECODE="1", OMP_NUM_THREADS="1")


def _predictions(tmp_path, n, name):
    rows = [dict(output="[[A]]" if i % 3 else "[[B]]", shuffled_order=[i % 2, 1 - i % 2], subset="LongQA",
                 tasktype="PairWise", subtype="same", ctx_length="4k", id=str(i)) for i in range(n)]
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _valid_score(path: Path) -> dict:
    data = json.loads(path.read_text())
    assert "AVG" in data and "provenance" in data
    return data


def test_score_json_survives_a_write_cut_short(tmp_path):
    """The child is killed by SIGXFSZ once its output passes 512 bytes (a full disk, a kill mid-write)."""
    preds = _predictions(tmp_path, 6, "p.jsonl")
    out = tmp_path / "score.json"
    old = {"model": "previous good run", "AVG": 0.5, "pad": "x" * 2000}
    out.write_text(json.dumps(old))

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (512, 512))

    proc = subprocess.run([sys.executable, "-m", "longrm_tasks.cli", "score", "--predictions", str(preds),
                           "--json", str(out), "--quiet"], env=ENV, preexec_fn=limit, capture_output=True)
    assert proc.returncode != 0  # killed by SIGXFSZ, or a one-line "file too large" error
    assert json.loads(out.read_text()) == old  # the previous result is intact, not a 512-byte torso


def test_score_json_survives_sigkill_mid_write(tmp_path):
    preds = _predictions(tmp_path, 6, "p.jsonl")
    out = tmp_path / "score.json"
    old = {"model": "previous good run", "AVG": 0.25}
    out.write_text(json.dumps(old))
    # The child stops inside the atomic writer, after writing and before the rename, and is SIGKILLed there.
    child = textwrap.dedent(f"""
        import os, sys, time
        import longrm_tasks.atomic as atomic
        def stall(fd):
            print("writing", flush=True)
            time.sleep(60)
        atomic.os.fsync = stall
        from longrm_tasks.cli import main
        main(["score", "--predictions", {str(preds)!r}, "--json", {str(out)!r}, "--quiet"])
    """)
    proc = subprocess.Popen([sys.executable, "-c", child], env=ENV, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert json.loads(out.read_text()) == old
    # Rerun normally: the result replaces the old file; the killed run's temporary file is not the output.
    subprocess.run([sys.executable, "-m", "longrm_tasks.cli", "score", "--predictions", str(preds), "--json",
                    str(out), "--quiet"], env=ENV, check=True)
    assert _valid_score(out)["extra"]["presentations"] == 6


def test_concurrent_score_writers_never_leave_invalid_json(tmp_path):
    out = tmp_path / "score.json"
    inputs = [_predictions(tmp_path, n, f"p{n}.jsonl") for n in (3, 40, 200)]
    writer = textwrap.dedent(f"""
        import sys
        from longrm_tasks.cli import main
        for _ in range(15):
            assert main(["score", "--predictions", sys.argv[1], "--json", {str(out)!r}, "--quiet"]) == 0
    """)
    procs = [subprocess.Popen([sys.executable, "-c", writer, str(p)], env=ENV) for p in inputs]
    reads = bad = 0
    while any(p.poll() is None for p in procs):
        if out.exists():
            reads += 1
            try:
                _valid_score(out)
            except (json.JSONDecodeError, AssertionError):
                bad += 1
        time.sleep(0.001)
    assert [p.wait() for p in procs] == [0, 0, 0]
    assert bad == 0, f"{bad} of {reads} reads saw an invalid file"
    assert _valid_score(out)["extra"]["presentations"] in (3, 40, 200)
    assert not list(tmp_path.glob(".score.json.*.tmp"))  # no temporary files left behind


def test_atomic_writer_concurrent_large_files(tmp_path):
    out = tmp_path / "big.json"
    writer = textwrap.dedent(f"""
        import sys
        from longrm_tasks.atomic import write_json
        tag = sys.argv[1]
        for i in range(10):
            write_json({str(out)!r}, {{"tag": tag, "i": i, "rows": [tag * 50] * 4000}})
    """)
    procs = [subprocess.Popen([sys.executable, "-c", writer, tag], env=ENV) for tag in "abc"]
    bad = 0
    while any(p.poll() is None for p in procs):
        if out.exists():
            try:
                data = json.loads(out.read_text())
                assert len(data["rows"]) == 4000
            except (json.JSONDecodeError, AssertionError):
                bad += 1
    assert [p.wait() for p in procs] == [0, 0, 0] and bad == 0


def test_failed_write_keeps_the_old_file_and_no_temporary(tmp_path):
    out = tmp_path / "x.jsonl"
    write_jsonl(out, [{"a": 1}])

    def rows():
        yield {"a": 2}
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_jsonl(out, rows())
    assert out.read_text() == '{"a": 1}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["x.jsonl"]


def test_written_files_get_ordinary_permissions(tmp_path):
    out = tmp_path / "x.json"
    write_json(out, {"a": 1})
    umask = os.umask(0)
    os.umask(umask)
    assert (out.stat().st_mode & 0o777) == (0o666 & ~umask)


def test_check_writable_names_the_option(tmp_path):
    afile = tmp_path / "f"
    afile.write_text("x")
    for bad, needle in ((tmp_path, "is a folder"), (afile / "x.json", "is a file"),
                        (tmp_path / "missing" / "x.json", "does not exist")):
        with pytest.raises(InputError) as info:
            check_writable(bad, "--json")
        assert info.value.field == "--json" and needle in str(info.value)
    with pytest.raises(InputError, match="is a file"):
        check_writable(afile / "deeper" / "x.json", "--json", make_parents=True)
    target = check_writable(tmp_path / "new" / "deeper" / "x.json", "--json", make_parents=True)
    assert target.parent.is_dir()
    with atomic_write(target) as handle:
        handle.write("ok")
    assert target.read_text() == "ok"


def test_devices_and_pipes_are_written_not_replaced(tmp_path):
    """`--json /dev/null`, /dev/stdout or a named pipe must never be renamed over (that would replace the
    device node with a file). Shown on a named pipe: a device node here would risk the real /dev/null."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE)
    write_json(fifo, {"b": 2})
    assert json.loads(reader.communicate(timeout=10)[0]) == {"b": 2}
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_symlinked_output_replaces_the_file_it_points_at(tmp_path):
    real = tmp_path / "run3.json"
    real.write_text("{}")
    real.chmod(0o640)
    link = tmp_path / "latest.json"
    link.symlink_to(real.name)
    write_json(link, {"run": 3})
    assert link.is_symlink() and json.loads(real.read_text()) == {"run": 3}
    assert (real.stat().st_mode & 0o777) == 0o640  # a replaced file keeps its permissions
