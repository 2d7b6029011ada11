"""What "Train on this dataset" puts into the Train tab: the settings of the shipped recipe of the run's stage and
model family, so that the web UI trains as ``llamafactory-cli train recipes/<model>/stage1.yaml`` does, not with
LLaMA-Factory's form defaults (a learning rate 500 times the paper's for stage 1)."""

from pathlib import Path

# the chat template -> the shipped recipes of its model family
RECIPE_FOLDER_OF_TEMPLATE = {
    "llava": "llava-1.5-7b",
    "llava_next_mistral": "llava-v1.6-mistral-7b",
    "qwen2_vl": "qwen2-vl-7b",  # Qwen2.5-VL's recipes (the same template) hold the same training values
    "qwen3_vl_nothink": "qwen3-vl-8b",
}
RECIPE_OF_ACTION = {"pref": "stage1.yaml", "infuse": "stage2.yaml"}
# Train-tab element (train.NAME) -> the recipe key it shows, and how the form writes the value
FORM_FIELDS = (
    ("learning_rate", "learning_rate", lambda value: f"{value:g}"),
    ("num_train_epochs", "num_train_epochs", lambda value: f"{float(value):g}"),
    ("lr_scheduler_type", "lr_scheduler_type", str),
    ("cutoff_len", "cutoff_len", int),
    ("batch_size", "per_device_train_batch_size", int),
    ("gradient_accumulation_steps", "gradient_accumulation_steps", int),
    ("lora_rank", "lora_rank", int),
    ("lora_alpha", "lora_alpha", int),
    ("lora_dropout", "lora_dropout", float),
    ("lora_target", "lora_target", str),
    ("freeze_vision_tower", "freeze_vision_tower", bool),
    ("freeze_multi_modal_projector", "freeze_multi_modal_projector", bool),
    ("image_max_pixels", "image_max_pixels", str),
    ("pref_beta", "pref_beta", float),
    ("stic_alpha", "stic_alpha", float),
)
# recipe keys the form has no field for: they go into its "Extra arguments" JSON
EXTRA_KEYS = ("warmup_ratio", "weight_decay")


def recipe_path(template: str | None, action: str) -> Path | None:
    """The shipped recipe of this stage for this template's model family, or None."""
    from ..assets import recipes_dir

    folder, name = RECIPE_FOLDER_OF_TEMPLATE.get(template or ""), RECIPE_OF_ACTION.get(action)
    if folder is None or name is None:
        return None
    return recipes_dir() / folder / name


def recipe_values(path: Path) -> tuple[dict, dict]:
    """(Train-tab element name -> value, extra arguments) of a recipe: the keys it sets among ``FORM_FIELDS``
    and ``EXTRA_KEYS``."""
    import yaml

    recipe = yaml.safe_load(path.read_text(encoding="utf-8"))
    fields = {element: convert(recipe[key]) for element, key, convert in FORM_FIELDS if key in recipe}
    extra = {key: recipe[key] for key in EXTRA_KEYS if key in recipe}
    return fields, extra


def merged_extra_arguments(current: str | None, extra: dict) -> str:
    """The form's "Extra arguments" JSON with the recipe's keys set (the user's other keys kept); an unreadable
    box is replaced by the recipe's keys alone."""
    import json

    try:
        values = json.loads(current or "{}")
    except ValueError:
        values = {}
    if not isinstance(values, dict):
        values = {}
    return json.dumps({**values, **extra})


def describe(path: Path, fields: dict, extra: dict) -> str:
    """What was set, for the message under the button."""
    from ..assets import recipes_dir

    shown = ", ".join(f"{name} {value}" for name, value in {**fields, **extra}.items())
    return f"set from {path.relative_to(recipes_dir().parent).as_posix()}: {shown}"
