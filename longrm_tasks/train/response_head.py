"""Log-probabilities of target tokens through the LM head, a block of positions at a time.

A preference step only needs ``log p(target)`` at the response positions. With
a 150K vocabulary the logits of even a few thousand positions are gigabytes,
so they are never kept: the forward computes one block of rows, keeps only
its log-sum-exp, and the backward recomputes the block's logits and turns them
into the logits gradient in place (four matrix products per block instead of
three, and one ``rows x vocab`` buffer alive at a time).

On CUDA, TRL's ``ChunkedLogProbFunction`` (a Triton kernel) does this job and
is used. On CPU that kernel falls back to per-vocabulary-tile torch ops and
measured 2x slower than this function (1,024 rows x 150K vocabulary, fp32,
one thread: 6.1 s vs 3.0 s for forward + backward), which is why this exists.
"""
from __future__ import annotations

import torch
from torch.distributed.tensor import DTensor

from longrm_tasks.compat import trl_chunked_logprob_function, trl_maybe_gather_lm_head_ctx

maybe_gather_lm_head_ctx = trl_maybe_gather_lm_head_ctx()


class _BlockLogProb(torch.autograd.Function):
    """``log_softmax(scale * softcap(h @ W.T + b))[target]`` for one block of rows."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, softcap, scale):
        product = hidden @ weight.t()  # under autocast this runs in the autocast dtype
        logits = _finish_logits(product, bias, softcap, scale)
        picked = logits.gather(-1, targets[:, None])[:, 0]
        # log-sum-exp in place: the block's logits are the only rows x vocab buffer
        top = logits.amax(-1)
        lse = logits.sub_(top[:, None]).exp_().sum(-1).log_().add_(top)
        ctx.save_for_backward(hidden, weight, bias, targets, lse)
        ctx.softcap, ctx.scale, ctx.matmul_dtype = softcap, scale, product.dtype
        return picked - lse

    @staticmethod
    def backward(ctx, grad_out):
        hidden, weight, bias, targets, lse = ctx.saved_tensors
        with maybe_gather_lm_head_ctx(weight, bias):  # ZeRO-3 re-partitioned the head after the forward
            return _BlockLogProb._backward(ctx, grad_out, hidden, weight, bias, targets, lse)

    @staticmethod
    def _backward(ctx, grad_out, hidden, weight, bias, targets, lse):
        # No autocast here: run the products in the forward's dtype explicitly.
        dtype = ctx.matmul_dtype
        h, w = hidden.to(dtype), weight.to(dtype)
        logits = _finish_logits(h @ w.t(), bias, ctx.softcap, ctx.scale)
        # y = c * tanh(z / c)  =>  dy/dz = 1 - (y / c)^2, taken before the logits buffer is reused
        cap_slope = (logits / ctx.softcap).square_().neg_().add_(1) if ctx.softcap else None
        # d/dlogits of (logit[t] - lse) = onehot(t) - softmax, times the incoming gradient.
        grad = logits.sub_(lse[:, None]).exp_().mul_(-grad_out[:, None])
        grad.scatter_add_(-1, targets[:, None], grad_out[:, None])
        if cap_slope is not None:
            grad.mul_(cap_slope)
        if ctx.scale != 1.0:
            grad.mul_(ctx.scale)
        grad_bias = grad.sum(0).to(bias.dtype) if bias is not None and ctx.needs_input_grad[2] else None
        grad = grad.to(dtype)
        grad_hidden = (grad @ w).to(hidden.dtype) if ctx.needs_input_grad[0] else None
        grad_weight = (grad.t() @ h).to(weight.dtype) if ctx.needs_input_grad[1] else None
        return grad_hidden, grad_weight, grad_bias, None, None, None


def _finish_logits(product, bias, softcap, scale) -> torch.Tensor:
    """fp32 logits from ``hidden @ weight.T``: bias, logit scale, soft-capping."""
    logits = product.float()
    if bias is not None:
        logits.add_(bias)
    if scale != 1.0:
        logits.mul_(scale)
    if softcap:
        logits.div_(softcap).tanh_().mul_(softcap)
    return logits


def target_logps(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, targets: torch.Tensor, *,
                 block_rows: int = 1024, softcap: float | None = None, scale: float = 1.0,
                 vocab_chunk_size: int = 16_384) -> torch.Tensor:
    """Per-row ``log p(targets)`` (fp32) of the LM head ``weight``/``bias`` over ``hidden`` (N x H)."""
    if hidden.device.type == "cuda":
        chunked = trl_chunked_logprob_function()
        pieces = [chunked.apply(hidden[s:s + block_rows], weight, bias, targets[s:s + block_rows],
                                1.0, vocab_chunk_size, softcap, scale, ())[0]
                  for s in range(0, hidden.shape[0], block_rows)]
    else:
        pieces = [_BlockLogProb.apply(hidden[s:s + block_rows], weight, bias, targets[s:s + block_rows],
                                      softcap, scale)
                  for s in range(0, hidden.shape[0], block_rows)]
    return torch.cat(pieces)


def causal_lm(model):
    """The ``*ForCausalLM`` inside a PEFT wrapper (LoRA layers are injected in place, so they still run)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def lm_head_logps(model, hidden: torch.Tensor, targets: torch.Tensor, block_rows: int = 1024) -> torch.Tensor:
    """Per-row log p(target) of ``model``'s LM head over ``hidden`` (N x H), ``block_rows`` rows at a time.

    Only the given rows ever meet the head: callers pass the positions whose next token is trained
    (responses, completions), so no ``tokens x vocabulary`` tensor is built for the context. The model's
    final-logit soft-capping and logit scale are applied as its own head does.
    """
    lm = causal_lm(model)
    head = lm.get_output_embeddings()
    if hasattr(head, "base_layer"):
        # the head's weight is read directly below, so an adapter on it would be silently ignored
        raise ValueError("adapters on the LM head are not supported; leave lm_head out of the PEFT target_modules")
    text_config = lm.config.get_text_config()
    weight, bias = head.weight, head.bias
    # The head's weight is used outside the head's forward, where distributed wrappers do not
    # materialise it (TRL's fused heads do the same): FSDP2 keeps DTensor shards, gathered here once
    # (the gather's backward reduce-scatters the gradient); ZeRO-3 keeps an empty placeholder,
    # gathered for the forward here and again by `target_logps`' backward.
    if isinstance(weight, DTensor):
        weight = weight.full_tensor()
        bias = bias.full_tensor() if bias is not None else None
    with maybe_gather_lm_head_ctx(weight, bias):
        return target_logps(hidden.to(weight.device), weight, bias, targets.to(weight.device), block_rows=block_rows,
                            softcap=getattr(text_config, "final_logit_softcapping", None),
                            scale=getattr(text_config, "logit_scale", None) or 1.0)
