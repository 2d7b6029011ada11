import time

from stic_plugin.data.output import ShardedOutput
from stic_plugin.generation.base import Generation, Request
from stic_plugin.pipeline.describer import Sampling
from stic_plugin.pipeline.run import Job, Outcome, Pipeline


class EchoJob(Job):
    unit = "sample"

    def start(self, unit, prepared):
        yield Request([{"role": "user", "content": unit}])

    def finish(self, request, generation):
        yield Outcome(record={"text": generation.text})


class SlowToLoad:
    """A generator whose model takes a while to load, then answers at once."""

    def __init__(self):
        time.sleep(0.3)
        self.loaded_at = time.time()

    def generate_stream(self, requests, max_new_tokens, temperature, top_p, **_):
        for request in requests:
            yield request, Generation(text=request.messages[0]["content"], tokens=1, truncated=False)


def test_the_progress_bar_s_clock_starts_once_the_model_is_loaded(tmp_path):
    """The first ETA is of generating: the bar's start time is moved past the model's loading."""
    made = []
    output = ShardedOutput(str(tmp_path), "echo")
    pipeline = Pipeline(
        output, EchoJob(), lambda: made.append(SlowToLoad()) or made[-1], 8, Sampling(0.0, 1.0, 0, 4), batch_size=2
    )
    tally = pipeline.run(["a", "b", "c"])
    assert tally["written"] == 3
    assert pipeline.progress.start_t >= made[0].loaded_at  # the 0.3 s of loading are not in its rate
