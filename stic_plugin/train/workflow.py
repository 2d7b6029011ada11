"""``run_stic_dpo``: the ``stic_dpo`` training stage, with the signature of LLaMA-Factory's ``run_dpo``.

Data, model, reference model and saving are LLaMA-Factory's; the trainer is ``SticDPOTrainer``.
"""

from typing import TYPE_CHECKING

from ..constants import STAGE

if TYPE_CHECKING:
    from llamafactory.hparams import DataArguments, FinetuningArguments, ModelArguments
    from transformers import Seq2SeqTrainingArguments, TrainerCallback


def check_preference_datasets(data_args: "DataArguments") -> None:
    """Every dataset of a stic_dpo run must be in dataset_info.json and be preference pairs: say which one is
    not, in which folder it was looked for, and the closest name there."""
    import difflib
    import json
    from pathlib import Path

    from llamafactory.data.parser import get_dataset_list

    from .options import SticConfigError

    folder = data_args.dataset_dir
    info = None
    if isinstance(folder, str) and folder != "ONLINE":
        path = Path(folder).absolute() / "dataset_info.json"
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
        except OSError as err:
            raise SticConfigError(
                f"`stage: {STAGE}` reads its datasets from {path}, which cannot be read ({err.strerror}); "
                "set `dataset_dir` to the folder that `stic-cli pref` wrote"
            ) from None
        except ValueError as err:
            raise SticConfigError(f"{path} is not valid JSON: {err}") from None
    for key in ("dataset", "eval_dataset"):
        names = getattr(data_args, key)
        if not names:
            continue
        if isinstance(info, dict):
            for name in names:
                if name not in info:
                    ranked = [
                        entry for entry, value in info.items() if isinstance(value, dict) and value.get("ranking")
                    ]
                    close = difflib.get_close_matches(name, ranked, n=1) or difflib.get_close_matches(name, info, n=1)
                    hint = f" Did you mean `{close[0]}`?" if close else ""
                    listed = ", ".join(f"`{entry}`" for entry in ranked) or "none"
                    raise SticConfigError(
                        f"{key} `{name}` is not in {path} (the folder `dataset_dir` names).{hint} "
                        f"Preference datasets there: {listed}."
                    )
        for name, attr in zip(names, get_dataset_list(names, data_args.dataset_dir)):
            if not attr.ranking:
                raise SticConfigError(
                    f"`stage: {STAGE}` trains on preference pairs, but {key} `{name}` is not one: its entry in "
                    f'{data_args.dataset_dir}/dataset_info.json needs `"ranking": true` and chosen/rejected columns.'
                )


def run_stic_dpo(
    model_args: "ModelArguments",
    data_args: "DataArguments",
    training_args: "Seq2SeqTrainingArguments",
    finetuning_args: "FinetuningArguments",
    callbacks: list["TrainerCallback"] | None = None,
) -> None:
    from llamafactory.data import PairwiseDataCollatorWithPadding, get_dataset, get_template_and_fix_tokenizer
    from llamafactory.extras.constants import IGNORE_INDEX
    from llamafactory.extras.misc import calculate_tps
    from llamafactory.model import load_model, load_tokenizer
    from llamafactory.train.trainer_utils import create_modelcard_and_push, create_ref_model

    from .callbacks import with_stic_log_callback
    from .plots import plot_curves
    from .trainer import SticDPOTrainer

    check_preference_datasets(data_args)
    tokenizer_module = load_tokenizer(model_args)
    template = get_template_and_fix_tokenizer(tokenizer_module["tokenizer"], data_args)
    # "rm" is LLaMA-Factory's name for pairwise (chosen/rejected) preprocessing.
    dataset_module = get_dataset(template, model_args, data_args, training_args, stage="rm", **tokenizer_module)
    model = load_model(tokenizer_module["tokenizer"], model_args, finetuning_args, training_args.do_train)
    label_pad = IGNORE_INDEX if data_args.ignore_pad_token_for_loss else tokenizer_module["tokenizer"].pad_token_id
    collator = PairwiseDataCollatorWithPadding(
        template=template, model=model, pad_to_multiple_of=8, label_pad_token_id=label_pad, **tokenizer_module
    )

    # As LLaMA-Factory's dpo stage: with LoRA and no `ref_model`, create_ref_model gives None and the trainer
    # uses the policy with its adapter switched off; full fine-tuning gets a frozen copy.
    if finetuning_args.ref_model is None and not training_args.do_train:
        ref_model = model
    else:
        ref_model = create_ref_model(model_args, finetuning_args)

    trainer = SticDPOTrainer(
        model=model,
        ref_model=ref_model,
        args=training_args,
        finetuning_args=finetuning_args,
        data_collator=collator,
        callbacks=with_stic_log_callback(callbacks),
        **dataset_module,
        **tokenizer_module,
    )

    if training_args.do_train:
        result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
        trainer.save_model()
        if finetuning_args.include_effective_tokens_per_second:
            result.metrics["effective_tokens_per_sec"] = calculate_tps(
                dataset_module["train_dataset"], result.metrics, stage="rm"
            )
        trainer.log_metrics("train", result.metrics)
        trainer.save_metrics("train", result.metrics)
        trainer.save_state()
        if trainer.is_world_process_zero() and finetuning_args.plot_loss:
            keys = ["loss", "stic/nll", "rewards/accuracies"]
            eval_dataset = dataset_module.get("eval_dataset")
            keys += [f"eval_{name}_loss" for name in eval_dataset] if isinstance(eval_dataset, dict) else ["eval_loss"]
            plot_curves(training_args.output_dir, keys)  # titled with the run's folder name, not its absolute path

    if training_args.do_eval:
        metrics = trainer.evaluate(metric_key_prefix="eval")
        if ref_model is model:  # rewards against itself are zero by construction: don't report them
            metrics = {key: value for key, value in metrics.items() if "rewards" not in key}
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)

    create_modelcard_and_push(trainer, model_args, data_args, training_args, finetuning_args)
