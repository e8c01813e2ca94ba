"""The block-wise LM-head log-probabilities equal log_softmax over full logits, values and gradients."""
import pytest
import torch

pytest.importorskip("trl", reason="the [train] extra (TRL) is not installed")

from longrm_tasks.train.response_head import target_logps  # noqa: E402


def reference(hidden, weight, bias, targets, softcap, scale):
    logits = hidden @ weight.t() + (bias if bias is not None else 0)
    logits = logits.float() * scale
    if softcap:
        logits = softcap * torch.tanh(logits / softcap)
    return torch.log_softmax(logits, -1).gather(-1, targets[:, None])[:, 0]


@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("softcap,scale", [(None, 1.0), (3.0, 1.0), (None, 0.5), (2.0, 1.7)])
@pytest.mark.parametrize("block_rows", [4, 1000])
def test_values_and_gradients_match_full_logits(with_bias, softcap, scale, block_rows):
    gen = torch.Generator().manual_seed(0)
    n, h, vocab = 13, 8, 50
    leaves = [torch.randn(n, h, generator=gen), torch.randn(vocab, h, generator=gen),
              torch.randn(vocab, generator=gen) if with_bias else None]
    targets = torch.randint(vocab, (n,), generator=gen)
    weights = torch.randn(n, generator=gen)  # a non-uniform incoming gradient
    grads = []
    for fn in (lambda *a: target_logps(*a, block_rows=block_rows, softcap=softcap, scale=scale),
               lambda *a: reference(*a, softcap, scale)):
        inputs = [t.clone().requires_grad_() if t is not None else None for t in leaves]
        out = fn(*inputs, targets)
        (out * weights).sum().backward()
        grads.append((out.detach(), [t.grad for t in inputs if t is not None]))
    (ours, ours_grads), (ref, ref_grads) = grads
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    for a, b in zip(ours_grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_bf16_inputs_give_bf16_gradients_close_to_fp32():
    gen = torch.Generator().manual_seed(1)
    hidden, weight = torch.randn(6, 16, generator=gen), torch.randn(40, 16, generator=gen)
    targets = torch.randint(40, (6,), generator=gen)
    h16, w16 = hidden.bfloat16().requires_grad_(), weight.bfloat16().requires_grad_()
    out = target_logps(h16, w16, None, targets)
    out.sum().backward()
    assert h16.grad.dtype == torch.bfloat16 and w16.grad.dtype == torch.bfloat16
    h32 = hidden.clone().requires_grad_()
    reference(h32, weight, None, targets, None, 1.0).sum().backward()
    assert (out.float() - reference(hidden, weight, None, targets, None, 1.0)).abs().max() < 0.3
    assert (h16.grad.float() - h32.grad).abs().max() < 0.1 * h32.grad.abs().max()


def test_autocast_with_bf16_hidden_and_fp32_head():
    """Under autocast the forward's product runs in bf16; the backward (no autocast) must match dtypes itself."""
    gen = torch.Generator().manual_seed(2)
    hidden = torch.randn(5, 16, generator=gen).bfloat16().requires_grad_()
    weight = torch.randn(40, 16, generator=gen).requires_grad_()
    targets = torch.randint(40, (5,), generator=gen)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = target_logps(hidden, weight, None, targets)
    out.sum().backward()
    assert hidden.grad.dtype == torch.bfloat16 and weight.grad.dtype == torch.float32
    expected = reference(hidden.detach().float(), weight.detach(), None, targets, None, 1.0)
    assert (out - expected).abs().max() < 0.3
