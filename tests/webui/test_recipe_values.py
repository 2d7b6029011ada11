"""What "Train on this dataset" puts into the Train tab: the shipped recipe's settings, by stage and model family."""

import json

import pytest
import yaml

from stic_plugin.webui.recipe_values import (
    RECIPE_FOLDER_OF_TEMPLATE,
    merged_extra_arguments,
    recipe_path,
    recipe_values,
)

from helpers import REPO


@pytest.mark.parametrize("template", sorted(RECIPE_FOLDER_OF_TEMPLATE))
@pytest.mark.parametrize(("action", "stage"), [("pref", "stic_dpo"), ("infuse", "sft")])
def test_each_template_gets_its_familys_recipe_of_the_stage(template, action, stage):
    path = recipe_path(template, action)
    recipe = yaml.safe_load(path.read_text())
    assert recipe["template"] == template and recipe["stage"] == stage
    assert path == REPO / "recipes" / RECIPE_FOLDER_OF_TEMPLATE[template] / path.name
    fields, extra = recipe_values(path)
    assert float(fields["learning_rate"]) == recipe["learning_rate"]
    assert fields["lora_rank"] == recipe["lora_rank"] and fields["cutoff_len"] == recipe["cutoff_len"]
    assert fields["batch_size"] == recipe["per_device_train_batch_size"]
    assert extra["warmup_ratio"] == recipe["warmup_ratio"]
    if stage == "stic_dpo":
        assert fields["stic_alpha"] == recipe["stic_alpha"] and fields["pref_beta"] == recipe["pref_beta"]


def test_the_paper_learning_rates_replace_the_forms_defaults():
    assert recipe_values(recipe_path("llava_next_mistral", "pref"))[0]["learning_rate"] == "1e-07"
    assert recipe_values(recipe_path("llava_next_mistral", "infuse"))[0]["learning_rate"] == "2e-05"


def test_no_recipe_for_other_templates_or_actions():
    assert (
        recipe_path("gemma3", "pref") is None
        and recipe_path("llava", "dar") is None
        and recipe_path(None, "pref") is None
    )


def test_the_recipes_extra_keys_join_what_the_user_wrote():
    merged = json.loads(merged_extra_arguments('{"optim": "adamw_torch", "warmup_ratio": 0.5}', {"warmup_ratio": 0.03}))
    assert merged == {"optim": "adamw_torch", "warmup_ratio": 0.03}
    assert json.loads(merged_extra_arguments("not json", {"weight_decay": 0.0})) == {"weight_decay": 0.0}
    assert json.loads(merged_extra_arguments("", {})) == {}
