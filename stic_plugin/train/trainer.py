"""``SticDPOTrainer``: LLaMA-Factory's DPO trainer with the STIC stage-1 loss (paper eq. 4.1).

Everything but the loss (forward pass, reference model with the LoRA adapter switched off or a
frozen copy, optimiser, logging) is LLaMA-Factory's own ``CustomDPOTrainer``.
"""

from typing import Literal

import torch
from llamafactory.extras.constants import IGNORE_INDEX
from llamafactory.train.dpo.trainer import CustomDPOTrainer

from .loss import stic_dpo_loss


def response_lengths(labels: "torch.Tensor", ignore_index: int = IGNORE_INDEX) -> "torch.Tensor":
    """Tokens scored per row: the labels shifted by one, as LLaMA-Factory's get_batch_logps counts them."""
    return (labels[:, 1:] != ignore_index).sum(-1)


class SticDPOTrainer(CustomDPOTrainer):
    """DPO + ``stic_alpha`` x NLL of the preferred response (Deng et al. 2024, "Enhancing Large Vision Language
    Models with Self-Training on Image Comprehension", eq. 4.1)."""

    def get_batch_loss_metrics(
        self,
        model,
        batch: dict[str, "torch.Tensor"],
        train_eval: Literal["train", "eval"] = "train",
    ) -> tuple["torch.Tensor", dict[str, float]]:
        pairs = batch["input_ids"].size(0) // 2  # the collator puts the chosen rows first, then the rejected
        chosen_lengths = response_lengths(batch["labels"][:pairs])

        policy = self.concatenated_forward(model, batch)
        reference_chosen_logps, reference_rejected_logps = self.compute_reference_log_probs(model, batch)
        out = stic_dpo_loss(
            policy["chosen_logps"],
            policy["rejected_logps"],
            reference_chosen_logps,
            reference_rejected_logps,
            chosen_lengths.to(policy["chosen_logps"].device),
            beta=self.beta,
            alpha=self.finetuning_args.stic_alpha,
            reduction=self.finetuning_args.stic_nll_reduction,
            label_smoothing=self.label_smoothing,
        )

        # The same keys on every rank and every step: LLaMA-Factory's log() averages them across ranks by position.
        prefix = "eval_" if train_eval == "eval" else ""
        metrics = {
            "rewards/chosen": out.chosen_rewards.mean().item(),
            "rewards/rejected": out.rejected_rewards.mean().item(),
            "rewards/accuracies": (out.chosen_rewards > out.rejected_rewards).float().mean().item(),
            "rewards/margins": (out.chosen_rewards - out.rejected_rewards).mean().item(),
            "logps/chosen": policy["chosen_logps"].mean().item(),
            "logps/rejected": policy["rejected_logps"].mean().item(),
            "logits/chosen": policy["chosen_logits"].mean().item(),
            "logits/rejected": policy["rejected_logits"].mean().item(),
            "stic/dpo_loss": out.dpo_losses.mean().item(),
            "stic/nll": out.chosen_nll.mean().item(),
        }
        return out.losses.mean(), {prefix + key: value for key, value in metrics.items()}
