"""The STIC loss (eq. 4.1) against a naive float64 computation, written independently with math."""

import math
import random

import pytest
import torch

from stic_plugin.train.loss import chosen_nll, stic_dpo_loss


def _log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def naive_stic_loss(pc, pr, rc, rr, length, beta, alpha, reduction, smoothing):
    margin = beta * ((pc - rc) - (pr - rr))
    dpo = -(1 - smoothing) * _log_sigmoid(margin) - smoothing * _log_sigmoid(-margin)
    nll = -pc if reduction == "sum" else -pc / length
    return dpo + alpha * nll, dpo, nll


def _random_batch(rng: random.Random, size: int):
    lengths = [rng.randint(1, 400) for _ in range(size)]
    # summed log-probs: a few nats per token, as real responses give
    policy_chosen = [-rng.uniform(0.1, 4.0) * n for n in lengths]
    policy_rejected = [-rng.uniform(0.1, 4.0) * rng.randint(1, 400) for _ in range(size)]
    ref_chosen = [p + rng.uniform(-30, 30) for p in policy_chosen]
    ref_rejected = [p + rng.uniform(-30, 30) for p in policy_rejected]
    return policy_chosen, policy_rejected, ref_chosen, ref_rejected, lengths


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize(
    "alpha,beta,smoothing", [(1 / 1024, 0.1, 0.0), (0.5, 0.5, 0.0), (0.0, 0.1, 0.0), (0.01, 0.2, 0.1)]
)
def test_matches_naive_float64(reduction, alpha, beta, smoothing):
    rng = random.Random(f"{reduction}-{alpha}-{beta}-{smoothing}")
    for _ in range(20):
        pc, pr, rc, rr, lengths = _random_batch(rng, size=rng.randint(1, 9))
        t = lambda xs: torch.tensor(xs, dtype=torch.float64)  # noqa: E731
        out = stic_dpo_loss(t(pc), t(pr), t(rc), t(rr), t(lengths), beta, alpha, reduction, smoothing)
        for i in range(len(pc)):
            loss, dpo, nll = naive_stic_loss(pc[i], pr[i], rc[i], rr[i], lengths[i], beta, alpha, reduction, smoothing)
            assert out.losses[i].item() == pytest.approx(loss, rel=1e-12, abs=1e-12)
            assert out.dpo_losses[i].item() == pytest.approx(dpo, rel=1e-12, abs=1e-12)
            assert out.chosen_nll[i].item() == pytest.approx(nll, rel=1e-12)
            assert out.chosen_rewards[i].item() == pytest.approx(beta * (pc[i] - rc[i]), rel=1e-12, abs=1e-12)
            assert out.rejected_rewards[i].item() == pytest.approx(beta * (pr[i] - rr[i]), rel=1e-12, abs=1e-12)


def test_float32_inputs_close_to_float64_reference():
    rng = random.Random(7)
    pc, pr, rc, rr, lengths = _random_batch(rng, size=64)
    t = lambda xs: torch.tensor(xs, dtype=torch.float32)  # noqa: E731
    out = stic_dpo_loss(t(pc), t(pr), t(rc), t(rr), t(lengths), 0.1, 1 / 1024)
    expected = [naive_stic_loss(*v, 0.1, 1 / 1024, "sum", 0.0)[0] for v in zip(pc, pr, rc, rr, lengths)]
    assert out.losses.tolist() == pytest.approx(expected, rel=1e-5, abs=1e-5)


def test_alpha_zero_is_exactly_the_dpo_term():
    rng = random.Random(3)
    pc, pr, rc, rr, lengths = (torch.tensor(v, dtype=torch.float32) for v in _random_batch(rng, size=16))
    out = stic_dpo_loss(pc, pr, rc, rr, lengths, beta=0.1, alpha=0.0)
    assert torch.equal(out.losses, out.dpo_losses)


def test_gradient_of_nll_term_is_alpha_per_nat():
    """d(alpha * summed NLL)/d(log pi(y_w|x)) = -alpha: the extra term pulls the chosen log-prob up."""
    pc = torch.tensor([-50.0, -80.0], dtype=torch.float64, requires_grad=True)
    zeros = torch.zeros(2, dtype=torch.float64)
    with_nll = stic_dpo_loss(pc, zeros, zeros, zeros, torch.tensor([10.0, 20.0]), 0.1, 0.25).losses.sum()
    (grad_with,) = torch.autograd.grad(with_nll, pc)
    without = stic_dpo_loss(pc, zeros, zeros, zeros, torch.tensor([10.0, 20.0]), 0.1, 0.0).losses.sum()
    (grad_without,) = torch.autograd.grad(without, pc)
    assert torch.allclose(grad_with - grad_without, torch.full((2,), -0.25, dtype=torch.float64))


def test_chosen_nll_reductions_and_unknown():
    logps, lengths = torch.tensor([-12.0, -3.0]), torch.tensor([4, 3])
    assert chosen_nll(logps, lengths, "sum").tolist() == [12.0, 3.0]
    assert chosen_nll(logps, lengths, "mean").tolist() == [3.0, 1.0]
    with pytest.raises(ValueError, match="reduction"):
        chosen_nll(logps, lengths, "max")
