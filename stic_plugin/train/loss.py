"""The STIC stage-1 loss (paper eq. 4.1) as pure functions of per-sequence log-probabilities.

    L = -log sigma( beta * [(log pi(y_w|x) - log ref(y_w|x)) - (log pi(y_l|x) - log ref(y_l|x))] )
        + alpha * NLL(y_w|x)

with NLL the SUMMED negative log-likelihood of the preferred response's tokens (``reduction="sum"``,
as the paper and the authors' code) or its per-sequence mean (``reduction="mean"``).
The log-probabilities are sums over response tokens, as LLaMA-Factory's DPO trainer computes them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    import torch


class SticLossOutput(NamedTuple):
    losses: torch.Tensor  # per pair: dpo_losses + alpha * chosen_nll
    dpo_losses: torch.Tensor  # per pair: the sigmoid DPO term alone
    chosen_nll: torch.Tensor  # per pair: the preferred response's NLL, reduced as asked
    chosen_rewards: torch.Tensor  # beta * (log pi - log ref), detached
    rejected_rewards: torch.Tensor


def chosen_nll(chosen_logps: torch.Tensor, chosen_lengths: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
    """Negative log-likelihood of each preferred response from its summed token log-probs."""
    if reduction == "sum":
        return -chosen_logps
    if reduction == "mean":
        return -chosen_logps / chosen_lengths
    raise ValueError(f"Unknown NLL reduction {reduction!r}: use 'sum' or 'mean'.")


def stic_dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    reference_chosen_logps: torch.Tensor,
    reference_rejected_logps: torch.Tensor,
    chosen_lengths: torch.Tensor,
    beta: float,
    alpha: float,
    reduction: str = "sum",
    label_smoothing: float = 0.0,
) -> SticLossOutput:
    """Eq. 4.1 of the STIC paper, per pair. ``label_smoothing`` is conservative DPO's epsilon (0: plain DPO)."""
    import torch.nn.functional as F

    # Same order of operations as TRL's sigmoid dpo_loss, so alpha = 0 reproduces LLaMA-Factory's `dpo` exactly.
    logits = (policy_chosen_logps - policy_rejected_logps) - (reference_chosen_logps - reference_rejected_logps)
    dpo_losses = -F.logsigmoid(beta * logits) * (1 - label_smoothing) - F.logsigmoid(-beta * logits) * label_smoothing
    nll = chosen_nll(policy_chosen_logps, chosen_lengths, reduction)
    losses = dpo_losses + alpha * nll if alpha else dpo_losses
    chosen_rewards = beta * (policy_chosen_logps - reference_chosen_logps).detach()
    rejected_rewards = beta * (policy_rejected_logps - reference_rejected_logps).detach()
    return SticLossOutput(losses, dpo_losses, nll, chosen_rewards, rejected_rewards)
