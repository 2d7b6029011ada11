"""The stic_dpo run's training curves: LLaMA-Factory's drawing, titled with the run's folder name."""

import json


def test_curves_are_written_and_titled_without_the_absolute_path(tmp_path):
    from stic_plugin.train.plots import curve_figure, plot_curves

    run = tmp_path / "saves" / "stage1"
    run.mkdir(parents=True)
    history = [{"step": step, "loss": 1.0 / step, "stic/nll": 50.0 - step} for step in range(1, 6)]
    (run / "trainer_state.json").write_text(json.dumps({"log_history": history + [{"step": 5, "train_loss": 0.3}]}))
    written = plot_curves(str(run), ["loss", "stic/nll", "eval_loss"])
    assert [path.name for path in written] == ["training_loss.png", "training_stic_nll.png"]  # no eval logged
    assert all(path.read_bytes().startswith(b"\x89PNG") for path in written)
    figure = curve_figure([1, 2], [0.5, 0.4], "loss", run.name)
    assert figure.axes[0].get_title() == "training loss of stage1"  # before: ... of /tmp/.../saves/stage1
