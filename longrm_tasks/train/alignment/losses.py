"""The LongRM Stage II loss: reference-free, length-normalised, V rejected judgments per prompt.

    L = -log σ( β·log π(y_w)/|y_w| − (β/V)·Σ_j log π(y_l^j)/|y_l^j| − γ ) + λ·NLL(y_w)

With V = 1 this is SimPO, and with the NLL term it is exactly TRL's
``CPOTrainer(loss_type="simpo", cpo_alpha=λ)``: TRL's NLL is the token-level
cross-entropy over all chosen tokens in the batch (``nn.CrossEntropyLoss``
mean), reproduced here as ``-Σ log π(y_w) / Σ |y_w|``.

All functions take summed log-probabilities and token counts, so they do not
care how those were computed (shared context or not).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class AlignmentLossOutput:
    loss: torch.Tensor              # scalar, what the optimiser sees
    preference_loss: torch.Tensor   # (B,) the -log σ(...) term per item
    nll_loss: torch.Tensor          # scalar, token-mean NLL of the chosen responses
    chosen_rewards: torch.Tensor    # (B,) β · mean log π(y_w), detached
    rejected_rewards: torch.Tensor  # (B, V) β · mean log π(y_l^j), detached


def multi_reject_loss(chosen_logps: torch.Tensor, chosen_lengths: torch.Tensor,
                      rejected_logps: torch.Tensor, rejected_lengths: torch.Tensor, *,
                      beta: float = 2.5, gamma: float = 0.5, nll_weight: float = 0.05,
                      ) -> AlignmentLossOutput:
    """Loss for a batch of B items with V rejected responses each.

    ``chosen_logps``/``chosen_lengths``: (B,) summed log-probs and token counts;
    ``rejected_logps``/``rejected_lengths``: (B, V).
    """
    if rejected_logps.ndim != 2 or rejected_logps.shape[0] != chosen_logps.shape[0]:
        raise ValueError(f"rejected_logps must be (B, V) with B={chosen_logps.shape[0]}, "
                         f"got {tuple(rejected_logps.shape)}")
    chosen_mean = chosen_logps / chosen_lengths
    rejected_mean = rejected_logps / rejected_lengths
    # (β/V)·Σ_j == β·mean_j
    logits = beta * chosen_mean - beta * rejected_mean.mean(dim=1) - gamma
    preference = -F.logsigmoid(logits)
    nll = -chosen_logps.sum() / chosen_lengths.sum()
    loss = preference.mean() + (nll_weight * nll if nll_weight else 0.0)
    return AlignmentLossOutput(loss=loss, preference_loss=preference, nll_loss=nll.detach(),
                               chosen_rewards=(beta * chosen_mean).detach(),
                               rejected_rewards=(beta * rejected_mean).detach())
