"""Shared-context training on the decoder families users train: sliding windows, soft-capping, layer mixes.

Every model here is a tiny random-weight config built at test time with windows far shorter than the
prompt, so the window really cuts the context (inside each response and across the prompt), and the
attention blocks are a few rows, so several blocks run. The reference is the model's own unshared
forward (its own mask and attention implementation) on prompt + response.
"""
import pytest
import torch
import transformers

pytest.importorskip("trl", reason="the [train] extra (TRL) is not installed")

from longrm_tasks.testing import build_tokenizer, full_logits_logps, random_prompt_and_responses  # noqa: E402
from longrm_tasks.train.alignment.losses import multi_reject_loss  # noqa: E402
from longrm_tasks.train.shared_context import (enable_shared_prefix_attention, shared_context_logps,  # noqa: E402
                                               shared_context_support, unshared_logps)

WINDOW = 6


def _config(family: str, vocab: int):
    common = dict(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                  tie_word_embeddings=False)
    if family == "gemma2":  # sliding/global alternation, attention and final logit soft-capping, eager attention
        return transformers.Gemma2Config(head_dim=8, sliding_window=WINDOW, attn_logit_softcapping=5.0,
                                         final_logit_softcapping=3.0, query_pre_attn_scalar=8, **common)
    if family == "gemma3":  # Gemma 3's sliding/global mix, local and global RoPE bases
        return transformers.Gemma3TextConfig(head_dim=8, sliding_window=WINDOW, query_pre_attn_scalar=8,
                                             layer_types=["sliding_attention", "full_attention"], **common)
    if family == "mistral":  # one window on every layer
        return transformers.MistralConfig(head_dim=8, sliding_window=WINDOW, **common)
    if family == "qwen2":  # Qwen2's use_sliding_window: layers from max_window_layers on are sliding
        return transformers.Qwen2Config(use_sliding_window=True, sliding_window=WINDOW, max_window_layers=1,
                                        **common)
    if family == "qwen3":
        return transformers.Qwen3Config(head_dim=8, **common)
    raise ValueError(family)


def _model(family: str):
    tok = build_tokenizer()
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(_config(family, len(tok)))
    model.train()  # dropout is zero in these configs; train mode exercises the training path
    return model, tok


FAMILIES = ["gemma2", "gemma3", "mistral", "qwen2", "qwen3"]


@pytest.mark.parametrize("family", FAMILIES)
def test_families_are_supported(family):
    model, _ = _model(family)
    assert shared_context_support(model.config) is None


@pytest.mark.parametrize("family", FAMILIES)
def test_shared_loss_and_gradients_equal_the_models_own_unshared_forward(family):
    model, tok = _model(family)
    model.activation_checkpointing_enable()
    # responses longer than the window, so it also cuts inside each response
    prompt, responses = random_prompt_and_responses(3, 23, [9, 4, 11], len(tok))
    params = [p for p in model.parameters() if p.requires_grad]

    def loss_and_grads(logps_fn):
        logps = logps_fn()
        lengths = torch.tensor([len(r) for r in responses], dtype=torch.float)
        out = multi_reject_loss(logps[:1], lengths[:1], logps[None, 1:], lengths[None, 1:])
        return logps.detach(), out.loss.detach(), torch.autograd.grad(out.loss, params)

    own_logps, own_loss, own = loss_and_grads(lambda: full_logits_logps(model, prompt, responses))
    enable_shared_prefix_attention(model)
    shared_logps, shared_loss, shared = loss_and_grads(
        lambda: shared_context_logps(model, prompt, responses, logit_chunk_size=5, attention_block_rows=4)[0])
    unshared_loss = loss_and_grads(lambda: unshared_logps(model, prompt, responses)[0])[1]
    torch.testing.assert_close(shared_logps, own_logps, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(shared_loss, own_loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(unshared_loss, own_loss, rtol=1e-5, atol=1e-6)
    worst = max(((a - b).abs().max() / b.abs().max().clamp(min=1e-12)).item() for a, b in zip(shared, own))
    assert worst < 1e-4, worst
    assert all(g.abs().sum() > 0 for g in shared)


def test_the_window_really_cuts_the_context():
    """Guards the test above: with the window the result differs from full attention, so it is exercised."""
    model, tok = _model("mistral")
    prompt, responses = random_prompt_and_responses(4, 23, [9], len(tok))
    windowed = full_logits_logps(model, prompt, responses)
    model.config.sliding_window = None
    full = full_logits_logps(model, prompt, responses)
    assert (windowed - full).abs().max() > 1e-3


@pytest.mark.parametrize("family", ["gemma2", "mistral"])
def test_packed_forward_builds_no_mask_over_the_sequence(family):
    model, tok = _model(family)
    enable_shared_prefix_attention(model)
    masks = []
    for layer in model.model.layers:
        layer.self_attn.register_forward_pre_hook(
            lambda module, args, kwargs: masks.append(kwargs.get("attention_mask")), with_kwargs=True)
    prompt, responses = random_prompt_and_responses(5, 30, [4, 6], len(tok))
    shared_context_logps(model, prompt, responses)
    assert masks == [None, None]
    # and the ordinary forward (generation, evaluation) still gets the model's own masks
    masks.clear()
    model(torch.tensor([prompt]))
    assert any(m is not None for m in masks)


def test_unsupported_features_are_named_in_one_line():
    config = _config("qwen3", 64)
    config.layer_types = ["full_attention", "chunked_attention"]
    reason = shared_context_support(config)
    assert "chunked_attention" in reason and "\n" not in reason
    assert "attention sinks" in shared_context_support(transformers.GptOssConfig())  # learned sink logits
    assert "chunked_attention" in shared_context_support(transformers.Llama4TextConfig())
    config = _config("qwen3", 64)
    config._attn_implementation = "flex_attention"
    assert "flex_attention" in shared_context_support(config)
    with pytest.raises(ValueError, match="share_context=False"):
        enable_shared_prefix_attention(transformers.AutoModelForCausalLM.from_config(
            _config("qwen3", 64), attn_implementation="flex_attention"))


def test_training_and_scorer_attentions_refuse_each_other():
    """Distinct names compared exactly: neither path accepts the other's attention function."""
    from longrm_tasks.rm.prefix_attention import IMPLEMENTATION, REMAINDERS_KWARG, use_shared_prefix_attention
    from longrm_tasks.train.shared_context import ATTENTION_PREFIX

    assert not IMPLEMENTATION.startswith(ATTENTION_PREFIX) and not ATTENTION_PREFIX.startswith(IMPLEMENTATION)
    model, tok = _model("qwen3")
    prompt, responses = random_prompt_and_responses(6, 12, [3, 4], len(tok))
    # a model switched to the scorer's attention: training refuses to enable or use it
    assert use_shared_prefix_attention(model)
    with pytest.raises(ValueError, match="RM scorer"):
        enable_shared_prefix_attention(model)
    with pytest.raises(RuntimeError, match=IMPLEMENTATION):
        shared_context_logps(model, prompt, responses)
    # the training layout reaching the scorer's function is refused, not silently ignored
    with pytest.raises(RuntimeError, match="RM scorer"):
        model.model(input_ids=torch.tensor([prompt]), longrm_layout=object())
    # a model switched to the training attention: the scorer declines it, and its keyword is refused
    model, tok = _model("qwen3")
    name = enable_shared_prefix_attention(model)
    assert name.startswith(ATTENTION_PREFIX + "[")
    assert not use_shared_prefix_attention(model) and model.config._attn_implementation == name
    with pytest.raises(RuntimeError, match="RM scorer's packed call"):
        model.model(input_ids=torch.tensor([prompt]), **{REMAINDERS_KWARG: [1]})
