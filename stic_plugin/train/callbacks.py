"""``SticLogCallback``: LLaMA-Factory's LogCallback, plus the ``stic/*`` metrics in ``trainer_log.jsonl``.

LogCallback writes a fixed set of keys (loss, accuracy, lr, ...) that the web UI reads; the STIC
terms (the DPO part and the NLL of the preferred response) are added to the same lines.
"""

from llamafactory.train.callbacks import LogCallback

STIC_METRIC_PREFIXES = ("stic/", "eval_stic/")


class SticLogCallback(LogCallback):
    """Installed by changing the class of the host's own instance (``with_stic_log_callback``): creating a
    second LogCallback would attach a second web-UI log handler, which clears and then doubles the UI log."""

    def on_log(self, args, state, control, **kwargs):
        latest = state.log_history[-1] if state.log_history else {}
        metrics = {key: value for key, value in latest.items() if key.startswith(STIC_METRIC_PREFIXES)}
        if metrics:
            # Keyed by step: the line is written later, on LogCallback's writer thread.
            self.__dict__.setdefault("_stic_metrics", {})[(state.global_step, "eval_loss" in latest)] = metrics
        return super().on_log(args, state, control, **kwargs)

    def _write_log(self, output_dir: str, logs: dict) -> None:
        pending = self.__dict__.setdefault("_stic_metrics", {})
        extra = pending.pop((logs.get("current_steps"), "eval_loss" in logs), {})
        super()._write_log(output_dir, {**logs, **extra})


def with_stic_log_callback(callbacks: list | None) -> list:
    """The same callbacks, LLaMA-Factory's LogCallback now also writing the stic/* metrics."""
    for callback in callbacks or []:
        if type(callback) is LogCallback:
            callback.__class__ = SticLogCallback
    return list(callbacks or [])
