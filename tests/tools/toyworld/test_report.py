from stic_plugin.tools.toyworld.data import DEMO, SMOKE
from stic_plugin.tools.toyworld.report import world_text


def test_the_world_s_description_holds_the_scale_s_numbers():
    for scale in (DEMO, SMOKE):
        text = world_text(vars(scale))
        assert "{" not in text and "}" not in text  # every placeholder filled
        assert f"trained from scratch for {scale.base_steps} steps" in text
        assert f"{scale.unlabeled_images} unlabeled pictures" in text and f"{scale.test_images} test pictures" in text
