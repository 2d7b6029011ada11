"""`stic-cli recipes DIR`: the shipped recipes and data templates copied where the README's commands run."""

from helpers import REPO


def test_the_recipes_and_templates_are_copied_and_an_earlier_copy_is_kept(stic, tmp_path):
    out = tmp_path / "mine"
    result = stic("recipes", str(out))
    assert result.returncode == 0, result.stderr
    for name in ("recipes/pref.yaml", "recipes/llava-1.5-7b/stage1.yaml", "data_templates/dataset_info.json"):
        assert (out / name).read_bytes() == (REPO / name).read_bytes()
    shipped = sorted(p.relative_to(REPO / "recipes") for p in (REPO / "recipes").rglob("*") if p.is_file())
    assert sorted(p.relative_to(out / "recipes") for p in (out / "recipes").rglob("*") if p.is_file()) == shipped

    (out / "recipes" / "pref.yaml").write_text("edited")
    (out / "notes.txt").write_text("mine")
    again = stic("recipes", str(out))
    assert again.returncode == 2 and "exist already" in again.stderr and "overwrite=true" in again.stderr
    assert (out / "recipes" / "pref.yaml").read_text() == "edited"  # nothing replaced
    replaced = stic("recipes", f"output_dir={out}", "overwrite=true")
    assert replaced.returncode == 0
    assert (out / "recipes" / "pref.yaml").read_bytes() == (REPO / "recipes" / "pref.yaml").read_bytes()
    assert (out / "notes.txt").read_text() == "mine"  # other files in the folder are kept
