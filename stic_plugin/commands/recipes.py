"""``stic-cli recipes DIR``: the shipped recipes and data templates, copied to DIR.

After ``pip install``, ``recipes/`` and ``data_templates/`` are inside the installed package (a checkout has them
beside it); ``cd DIR`` then runs the README's commands as they are written (``stic-cli pref recipes/pref.yaml``).
"""

import shutil
from pathlib import Path

from ..assets import data_templates_dir, recipes_dir
from .config.recipes import RecipesConfig


def copy_plan(cfg: RecipesConfig) -> list[tuple[Path, Path]]:
    """(source, target) of every file to copy."""
    out = Path(cfg.output_dir)
    plan = []
    for source_root, name in ((recipes_dir(), "recipes"), (data_templates_dir(), "data_templates")):
        for source in sorted(source_root.rglob("*")):
            if source.is_file() and "__pycache__" not in source.parts:
                plan.append((source, out / name / source.relative_to(source_root)))
    return plan


def run_recipes(cfg: RecipesConfig) -> int:
    plan = copy_plan(cfg)
    existing = [target for _, target in plan if target.exists()]
    if existing and not cfg.overwrite:
        raise ValueError(
            f"{len(existing)} file(s) of the copy exist already in {Path(cfg.output_dir).absolute()} (for example "
            f"{existing[0]}): they are kept. Choose another folder, or overwrite=true to replace them."
        )
    for source, target in plan:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    out = Path(cfg.output_dir).absolute()
    print(
        f"stic-cli recipes: {len(plan)} files in {out}/recipes and {out}/data_templates\n"
        f"  then: cd {out} && stic-cli pref recipes/pref.yaml image_dir=/path/to/images",
        flush=True,
    )
    return 0
