"""The training curves of a ``stic_dpo`` run (``plot_loss: true``), drawn as LLaMA-Factory draws them
(the raw values and their smoothed line), titled with the run's folder name rather than its absolute path."""

import io
import json
from pathlib import Path


def curve_figure(steps: list[int], values: list[float], key: str, run_name: str):
    """One curve: the logged values and their smoothing (LLaMA-Factory's ``smooth``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from llamafactory.extras.ploting import smooth

    figure, axis = plt.subplots()
    axis.plot(steps, values, color="#1f77b4", alpha=0.4, label="original")
    axis.plot(steps, smooth(values), color="#1f77b4", label="smoothed")
    axis.set_title(f"training {key} of {run_name}")
    axis.set_xlabel("step")
    axis.set_ylabel(key)
    axis.legend()
    return figure


def plot_curves(output_dir: str, keys: list[str]) -> list[Path]:
    """``training_KEY.png`` in ``output_dir`` for each logged key (``/`` in a key becomes ``_``); the written files."""
    import matplotlib.pyplot as plt

    folder = Path(output_dir)
    history = json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))["log_history"]
    written = []
    for key in keys:
        points = [(entry["step"], entry[key]) for entry in history if key in entry]
        if not points:
            continue
        figure = curve_figure([step for step, _ in points], [value for _, value in points], key, folder.name)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=100)
        plt.close(figure)
        path = folder / f"training_{key.replace('/', '_')}.png"
        path.write_bytes(buffer.getvalue())
        written.append(path)
    return written
