"""The paper's benchmarks through lmms-eval: the ``stic`` model (LLaMA-Factory's loader and template, LoRA
adapters, direct or describe-and-respond answers) and what ``stic-cli eval`` runs and prints.

Nothing here imports lmms-eval at module level except ``model`` (imported by lmms-eval itself, or when a
run starts): ``import stic_plugin`` and ``stic-cli --help`` never load it.
"""


def lmms_eval_models():
    """The entry point of group ``lmms_eval.models`` (pyproject.toml): lmms-eval's registry calls it."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return [ModelManifest(model_id=MODEL_ID, simple_class_path="stic_plugin.evaluation.model.SticModel")]


MODEL_ID = "stic"  # lmms-eval --model stic
