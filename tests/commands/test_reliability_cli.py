"""One place decides how failures reach a `longrm` user: one stderr line, a non-zero exit, no traceback."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from longrm_tasks import cli
from longrm_tasks.errors import InputError, closest_name, unknown_key_error

from project import ROOT  # noqa: E402
PRED = dict(output="[[A]]", shuffled_order=[0, 1], subset="LongQA", tasktype="PairWise", subtype="same",
            ctx_length="4k", id="a")


def _cli(*args, env=None, **kwargs):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), **(env or {}))
    return subprocess.run([sys.executable, "-m", "longrm_tasks.cli", *args], capture_output=True, text=True,
                          env=env, **kwargs)


def _one_line(proc, *needles, code=2):
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.fixture()
def preds(tmp_path):
    path = tmp_path / "preds.jsonl"
    path.write_text(json.dumps(PRED) + "\n")
    return path


def test_json_output_that_is_a_folder_or_under_a_file(tmp_path, preds):
    folder = tmp_path / "out"
    folder.mkdir()
    _one_line(_cli("score", "--predictions", str(preds), "--quiet", "--json", str(folder)), str(folder), "--json")
    under_file = preds / "x.json"
    _one_line(_cli("score", "--predictions", str(preds), "--quiet", "--json", str(under_file)), str(preds))
    _one_line(_cli("score", "--predictions", str(preds), "--quiet", "--json", str(preds / "a" / "b.json")),
              str(preds), "is a file")
    missing_parent = tmp_path / "new" / "folder" / "x.json"  # created, as `mkdir -p` would
    assert _cli("score", "--predictions", str(preds), "--quiet", "--json", str(missing_parent)).returncode == 0
    assert json.loads(missing_parent.read_text())["AVG"] == 1.0


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_unwritable_output_folder(tmp_path, preds):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        _one_line(_cli("score", "--predictions", str(preds), "--quiet", "--json", str(locked / "x.json")),
                  "not writable")
    finally:
        locked.chmod(0o700)


def test_usage_errors_are_one_line(preds):
    line = _one_line(_cli("score", "--predictions", str(preds), "--parser", "nope"), "--parser")
    assert "--help" in line
    _one_line(_cli("score"), "--predictions")


def test_ctrl_c_is_one_line_exit_130(monkeypatch, capsys, preds):
    import longrm_tasks.commands.score as score

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(score, "run", interrupted)
    assert cli.main(["score", "--predictions", str(preds)]) == 130
    err = capsys.readouterr().err
    assert err.strip() == "longrm score: interrupted (Ctrl-C)"

    def with_hint(args):
        raise KeyboardInterrupt("interrupted at step 4; rerun with --resume to continue")

    monkeypatch.setattr(score, "run", with_hint)
    assert cli.main(["score", "--predictions", str(preds)]) == 130
    assert capsys.readouterr().err.strip().endswith("rerun with --resume to continue")


def test_internal_errors_are_one_line_and_debug_reraises(monkeypatch, capsys, preds):
    import longrm_tasks.commands.score as score

    def bug(args):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(score, "run", bug)
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    assert cli.main(["score", "--predictions", str(preds)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ZeroDivisionError" in err[0] and cli.DEBUG_ENV in err[0]
    monkeypatch.setenv(cli.DEBUG_ENV, "1")
    with pytest.raises(ZeroDivisionError):
        cli.main(["score", "--predictions", str(preds)])
    monkeypatch.setattr(score, "run", lambda args: (_ for _ in ()).throw(InputError("bad", path="f", line=3)))
    with pytest.raises(InputError):
        cli.main(["score", "--predictions", str(preds)])


def test_a_command_with_a_missing_dependency_does_not_break_the_others(tmp_path, monkeypatch, capsys, preds):
    pkg = tmp_path / "fake_cmds"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "needs_extra.py").write_text(textwrap.dedent("""
        import not_an_installed_package_xyz  # an optional extra that is not installed
        HELP = "x"
    """))
    (pkg / "crashes.py").write_text("raise RuntimeError('half-written module')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(cli.SUBCOMMANDS, "needs-extra", "fake_cmds.needs_extra")
    monkeypatch.setitem(cli.SUBCOMMANDS, "crashes", "fake_cmds.crashes")
    monkeypatch.setitem(cli.SUBCOMMANDS, "absent", "fake_cmds.absent")
    # Every other command still works, and the full parser (``longrm --help``) still builds.
    assert cli.main(["score", "--predictions", str(preds), "--quiet"]) == 0
    assert "needs-extra" in cli.build_parser().format_help()
    assert cli.main(["needs-extra", "--whatever"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not_an_installed_package_xyz" in err and "pip install" in err
    assert cli.main(["crashes"]) == 2
    assert "half-written module" in capsys.readouterr().err
    assert cli.main(["absent"]) == 2
    assert "not part of this installation" in capsys.readouterr().err


def test_new_subcommands_are_registered_and_robust_while_absent(capsys):
    assert cli.SUBCOMMANDS["render"] == "longrm_tasks.commands.render"
    assert cli.SUBCOMMANDS["tasks"] == "longrm_tasks.commands.tasks"
    for name in ("render", "tasks"):
        module, reason = cli._load(cli.SUBCOMMANDS[name])
        if module is None:  # not written yet: one clear line, exit 2
            assert cli.main([name]) == 2
            err = capsys.readouterr().err
            assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_help_lists_every_command():
    proc = _cli("--help")
    assert proc.returncode == 0
    for name in ("score", "validate", "synth", "render", "tasks"):
        assert name in proc.stdout


def test_unknown_key_names_the_closest_known_one():
    err = unknown_key_error("data_dri", ["data_dir", "protocol", "max_gen_toks"], "--metadata")
    assert isinstance(err, InputError)
    assert "'data_dri'" in str(err) and "did you mean 'data_dir'" in str(err) and "--metadata" in str(err)
    assert closest_name("Protocol", ["protocol", "parser"]) == "protocol"
    assert closest_name("zzzz", ["protocol"]) is None
    assert "did you mean" not in str(unknown_key_error("zzzz", ["protocol"], "--set"))


def test_broken_pipe_is_quiet(preds):
    # `longrm score ... | head -1`: the reader goes away; no BrokenPipeError traceback.
    proc = subprocess.run(f"{sys.executable} -m longrm_tasks.cli score --predictions {preds} | head -c 1",
                          shell=True, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="200"))
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr


def test_errors_raised_inside_another_package_name_it(monkeypatch, capsys, preds):
    import longrm_tasks.commands.score as score

    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    monkeypatch.setattr(score, "run", lambda args: json.loads("{not json"))
    assert cli.main(["score", "--predictions", str(preds)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("longrm score: error: json: JSONDecodeError")


def test_announced_prints_once_and_propagates(capsys):
    from longrm_tasks.errors import announced

    with pytest.raises(InputError):
        with announced("lm_eval"):
            with announced("lm_eval"):  # nested hooks: still one line
                raise InputError("bad record", path="LongQA.jsonl", line=3, field="chosen")
    assert capsys.readouterr().err == "lm_eval: error: LongQA.jsonl:3: field 'chosen': bad record\n"


def test_typos_in_commands_choices_and_options_name_the_closest(capsys):
    for argv, guess in ((["scroe"], "'score'"), (["score", "--predictions", "x", "--parser", "strcit"], "'strict'"),
                        (["score", "--predictions", "x", "--jsno", "y"], "'--json' for '--jsno'")):
        with pytest.raises(SystemExit) as info:
            cli.main(argv)
        assert info.value.code == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"did you mean {guess}" in err
    with pytest.raises(SystemExit):
        cli.main(["score", "--predictions", "x", "--bogus"])
    assert "did you mean" not in capsys.readouterr().err  # nothing close: no wild guess
