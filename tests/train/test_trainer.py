"""SticDPOTrainer against LLaMA-Factory's own CustomDPOTrainer, on the same model and the same batch."""

import copy

import pytest
import torch

from stic_plugin.train.trainer import response_lengths


def test_response_lengths_counts_shifted_labels():
    labels = torch.tensor([[-100, -100, 5, 6, 7], [-100, 4, 4, -100, -100], [1, -100, -100, -100, -100]])
    # position 0 is never scored (shifted), as in LLaMA-Factory's get_batch_logps
    assert response_lengths(labels).tolist() == [3, 2, 0]


@pytest.fixture(scope="module")
def setup(tiny, pref_dataset_dir, tmp_path_factory):
    from llamafactory.data import PairwiseDataCollatorWithPadding, get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_model, load_tokenizer

    def args_for(stage: str, **extra):
        return get_train_args(
            dict(
                model_name_or_path=tiny["tiny-llava"],
                template="llava",
                stage=stage,
                do_train=True,
                finetuning_type="lora",
                lora_target="all",
                dataset="stic_pref",
                dataset_dir=str(pref_dataset_dir),
                cutoff_len=256,
                output_dir=str(tmp_path_factory.mktemp("out")),
                overwrite_output_dir=True,
                per_device_train_batch_size=4,
                report_to="none",
                use_cpu=True,
                **extra,
            )
        )

    model_args, data_args, training_args, dpo_args, _ = args_for("dpo")
    tokenizer_module = load_tokenizer(model_args)
    template = get_template_and_fix_tokenizer(tokenizer_module["tokenizer"], data_args)
    dataset = get_dataset(template, model_args, data_args, training_args, stage="rm", **tokenizer_module)
    model = load_model(tokenizer_module["tokenizer"], model_args, dpo_args, is_trainable=True)
    torch.manual_seed(0)
    for name, param in model.named_parameters():
        if "lora_B" in name:  # LoRA starts as the identity; move it so policy and reference differ
            param.data.normal_(0.0, 0.05)
    collator = PairwiseDataCollatorWithPadding(template=template, model=model, pad_to_multiple_of=8, **tokenizer_module)
    features = [dataset["train_dataset"][i] for i in range(4)]
    batch = collator(features)
    return dict(
        args_for=args_for,
        model=model,
        batch=batch,
        tokenizer_module=tokenizer_module,
        dataset=dataset,
        collator=collator,
        training_args=training_args,
        dpo_args=dpo_args,
    )


def _loss_and_metrics(trainer_cls, finetuning_args, setup):
    trainer = trainer_cls(
        model=setup["model"],
        ref_model=None,  # LoRA: the reference is the policy with its adapter switched off
        args=setup["training_args"],
        finetuning_args=finetuning_args,
        data_collator=setup["collator"],
        **setup["dataset"],
        **setup["tokenizer_module"],
    )
    with torch.no_grad():
        return trainer.get_batch_loss_metrics(setup["model"], copy.deepcopy(setup["batch"]))


def test_alpha_zero_equals_llamafactory_dpo_exactly(setup):
    from llamafactory.train.dpo.trainer import CustomDPOTrainer

    from stic_plugin.train.trainer import SticDPOTrainer

    dpo_loss, dpo_metrics = _loss_and_metrics(CustomDPOTrainer, setup["dpo_args"], setup)
    stic_args = setup["args_for"]("stic_dpo", stic_alpha=0.0)[3]
    stic_loss, stic_metrics = _loss_and_metrics(SticDPOTrainer, stic_args, setup)
    assert dpo_metrics["rewards/margins"] != 0.0  # policy and reference really differ
    assert torch.equal(stic_loss, dpo_loss)
    for key, value in dpo_metrics.items():
        assert stic_metrics[key] == value, key


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_nll_term_added_with_alpha(setup, reduction):
    from llamafactory.train.dpo.trainer import CustomDPOTrainer

    from stic_plugin.train.trainer import SticDPOTrainer

    dpo_loss, _ = _loss_and_metrics(CustomDPOTrainer, setup["dpo_args"], setup)
    stic_args = setup["args_for"]("stic_dpo", stic_alpha=0.125, stic_nll_reduction=reduction)[3]
    stic_loss, metrics = _loss_and_metrics(SticDPOTrainer, stic_args, setup)

    # Independent recount of the chosen responses' NLL in float64 from the model's logits.
    batch = copy.deepcopy(setup["batch"])
    labels = batch.pop("labels")
    with torch.no_grad():
        logits = setup["model"](**batch, use_cache=False).logits.double()
    pairs = labels.size(0) // 2
    nlls = []
    for row in range(pairs):
        total, count = 0.0, 0
        for pos in range(1, labels.size(1)):
            token = labels[row, pos].item()
            if token != -100:
                total -= torch.log_softmax(logits[row, pos - 1], dim=-1)[token].item()
                count += 1
        nlls.append(total if reduction == "sum" else total / count)
    expected_nll = sum(nlls) / pairs
    assert metrics["stic/nll"] == pytest.approx(expected_nll, rel=1e-4)
    assert stic_loss.item() == pytest.approx(dpo_loss.item() + 0.125 * expected_nll, rel=1e-4)
    assert metrics["stic/dpo_loss"] == pytest.approx(dpo_loss.item(), rel=1e-6)
