"""Other packages' internals: each accessor works on what is installed, and outside the range it was
written for it fails with one line (or, for the lm-eval start-up patches, steps aside saying so once)."""
from __future__ import annotations

import pytest

from longrm_tasks import compat


def test_version_tuple_reads_release_numbers():
    assert compat.version_tuple("2.13.0+cpu") == (2, 13, 0)
    assert compat.version_tuple("0.4.9.1") == (0, 4, 9, 1)
    assert compat.version_tuple("1.0.0rc1") == (1, 0, 0)
    assert compat.version_tuple("v5.0") == (5, 0)
    with pytest.raises(ValueError):
        compat.version_tuple("dev")


@pytest.mark.parametrize("name", [n for n, i in compat.INTERNALS.items() if i.distribution != "rewardbench"])
def test_installed_versions_are_in_the_ranges_the_code_was_written_for(name):
    # The suite runs on the declared dependencies; a range that excludes them would refuse every run.
    # The vLLM venv has the evaluation extras only ([vllm,api]: no TRL, whose trainer floor it is below).
    if compat.installed_version(compat.INTERNALS[name].distribution) is None:
        pytest.skip(f"{compat.INTERNALS[name].distribution} is not installed here (the vLLM venv has no [train])")
    assert compat.INTERNALS[name].problem() is None


def test_trl_accessors_return_the_real_objects():
    pytest.importorskip("trl", reason="the vLLM venv has no [train]")
    import trl.kernels
    from trl.models.utils import _ForwardRedirection

    assert compat.trl_forward_redirection() is _ForwardRedirection
    assert compat.trl_chunked_logprob_function() is trl.kernels.ChunkedLogProbFunction
    assert callable(compat.trl_maybe_gather_lm_head_ctx())


def test_accessors_return_the_real_objects():
    import torch
    import transformers.cache_utils
    from lm_eval.api.registry import model_registry
    from lm_eval.tasks.manager import TaskManager

    assert compat.lm_eval_task_manager_class() is TaskManager
    assert compat.lm_eval_model_registry() is model_registry
    from lm_eval.models.utils import resolve_max_length

    assert compat.lm_eval_resolve_max_length() is resolve_max_length
    assert compat.transformers_cache_layers() == (transformers.cache_utils.Cache, transformers.cache_utils.DynamicCache,
                                                  transformers.cache_utils.DynamicLayer)
    repeat_kv, sdpa_forward = compat.transformers_sdpa_helpers()
    masks, sdpa_mask, mask_interface = compat.transformers_mask_functions()
    assert callable(repeat_kv) and callable(sdpa_forward) and callable(sdpa_mask) and "sdpa" in masks
    op = compat.torch_cpu_flash_attention()
    assert op is not None
    q = torch.randn(1, 2, 4, 8)
    out, logsumexp = op(q, q, q)[:2]  # the two outputs prefix_attention relies on
    assert out.shape == q.shape and logsumexp.shape == (1, 2, 4)


def _pretend(monkeypatch, **versions):
    real = compat.installed_version
    monkeypatch.setattr(compat, "installed_version", lambda dist: versions.get(dist, real(dist)))


@pytest.mark.parametrize("version", ["0.4.12", "0.5.0"])
def test_outside_the_range_an_accessor_fails_in_one_line(monkeypatch, version):
    _pretend(monkeypatch, **{"lm-eval": version})
    with pytest.raises(compat.IncompatibleVersion) as err:
        compat.lm_eval_task_manager_class()
    message = str(err.value)
    assert "\n" not in message
    assert f"lm-eval {version} is installed" in message and "lm-eval>=0.4.13,<0.5" in message


def test_optional_fast_path_steps_aside_outside_its_range(monkeypatch):
    _pretend(monkeypatch, torch="3.0.0")
    assert compat.torch_cpu_flash_attention() is None


def test_missing_package_is_named(monkeypatch):
    _pretend(monkeypatch, rewardbench=None)
    with pytest.raises(compat.IncompatibleVersion, match=r"needs rewardbench>=0\.1\.4,<0\.2, which is not installed"):
        compat.rewardbench_loader_args()


def test_start_up_patches_step_aside_once_with_one_line(monkeypatch, capsys):
    import lm_eval.api.registry
    import lm_eval.tasks.manager

    from longrm_tasks.adapters.lm_eval import plugin as lm_eval_plugin

    _pretend(monkeypatch, **{"lm-eval": "0.4.11"})
    monkeypatch.setattr(lm_eval_plugin, "_announced", [])
    init = lm_eval.tasks.manager.TaskManager.__init__
    lm_eval_plugin.register_models(lm_eval.api.registry)
    lm_eval_plugin.patch_task_manager(lm_eval.tasks.manager)
    assert lm_eval.tasks.manager.TaskManager.__init__ is init  # nothing patched
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("longrm-tasks: start-up hook steps aside: ")
    assert "lm-eval 0.4.11 is installed" in lines[0] and "longrm tasks --path" in lines[0]
    with pytest.raises(compat.IncompatibleVersion):
        lm_eval_plugin.activate()


def test_longrm_eval_outside_the_range_is_one_line(monkeypatch, capsys):
    from longrm_tasks import cli

    _pretend(monkeypatch, **{"lm-eval": "0.4.9"})
    assert cli.main(["eval", "--model", "dummy", "--tasks", "long_rewardbench"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("longrm eval: error: ") and "lm-eval 0.4.9 is installed" in err[0]
