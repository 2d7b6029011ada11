"""Command configuration: overrides, fingerprints of local files, output names, engine keys."""

import os

import pytest

from stic_plugin.commands.config import DarConfig, InfuseConfig, Pref2SftConfig, PrefConfig, load_config
from stic_plugin.data.sources import files_signature


def test_text_overrides_stay_text_and_bad_yaml_names_the_key():
    config = load_config(
        DarConfig,
        None,
        [
            "model_name_or_path=m",
            "template=llava",
            "llava_file=q.json",
            "description_prompt=Describe it. Note: be brief",
            "batch_size=4",
            "adapter_name_or_path=null",
        ],
    )
    assert config.description_prompt == "Describe it. Note: be brief" and config.batch_size == 4
    assert config.adapter_name_or_path is None
    with pytest.raises(ValueError, match="`corruptions`: cannot read the value"):
        load_config(PrefConfig, None, ["model_name_or_path=m", "template=llava", "image_dir=x", "corruptions={a: [}"])


def test_fingerprint_sees_an_adapter_retrained_in_place(tmp_path):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_model.safetensors").write_bytes(b"12345")
    keys = ["model_name_or_path=hub/name", "template=llava", "image_dir=x", f"adapter_name_or_path={adapter}"]
    before = load_config(PrefConfig, None, keys).generation_fingerprint()
    assert before["model_files"] is None  # a hub name: nothing local to look at
    stat = (adapter / "adapter_model.safetensors").stat()
    os.utime(adapter / "adapter_model.safetensors", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    after = load_config(PrefConfig, None, keys).generation_fingerprint()
    assert before["adapter_files"] != after["adapter_files"]
    assert files_signature(str(tmp_path / "missing")) is None


@pytest.mark.parametrize(
    "cls,keys,message",
    [
        (PrefConfig, ["image_dir=x", "dataset_name=../elsewhere"], "`dataset_name` must be a plain name"),
        (DarConfig, ["llava_file=q.json", "predictions_name=a/b"], "`predictions_name` must be a plain name"),
        # The names of an output's own files: `a.stic` took `a`'s configuration, log, lock and skips into its data.
        (PrefConfig, ["image_dir=x", "dataset_name=a.stic"], "`dataset_name` must not end in .stic, .json, .png"),
        (InfuseConfig, ["llava_file=q.json", "dataset_name=dataset_info.json"], "must not end in .stic, .json"),
        (DarConfig, ["llava_file=q.json", "predictions_name=a.stats.JSON"], "`predictions_name` must not end in"),
    ],
)
def test_output_names_cannot_escape_their_folder_or_be_taken_for_an_output_s_files(cls, keys, message):
    with pytest.raises(ValueError, match=message):
        load_config(cls, None, ["model_name_or_path=m", "template=llava"] + keys)


def test_pref2sft_output_name_cannot_be_taken_for_an_output_s_files():
    with pytest.raises(ValueError, match="`dataset_name` must not end in"):
        load_config(Pref2SftConfig, None, ["dataset_name=a.lengths.png"])


def test_engine_keys():
    base = ["model_name_or_path=m", "template=llava", "image_dir=x"]
    default = load_config(PrefConfig, None, base)
    assert default.engine == "continuous" and default.compile_decoding == "auto"
    for text, value in (("true", True), ("false", False), ("auto", "auto")):
        assert load_config(PrefConfig, None, [*base, f"compile_decoding={text}"]).compile_decoding == value
    plain = load_config(PrefConfig, None, [*base, "engine=plain", "compile_decoding=false"])
    assert plain.engine == "plain"
    # neither changes what is generated from: an output resumes across engines
    assert plain.generation_fingerprint() == default.generation_fingerprint()
    on_vllm = load_config(PrefConfig, None, [*base, "engine=vllm", "tensor_parallel_size=2"])
    assert on_vllm.engine == "vllm" and on_vllm.tensor_parallel_size == 2
    assert on_vllm.generation_fingerprint() == default.generation_fingerprint()
    with pytest.raises(ValueError, match="`engine` must be one of continuous, plain, vllm"):
        load_config(PrefConfig, None, [*base, "engine=sglang"])
    with pytest.raises(ValueError, match="`tensor_parallel_size` must be at least 1"):
        load_config(PrefConfig, None, [*base, "engine=vllm", "tensor_parallel_size=0"])
    with pytest.raises(ValueError, match="`compile_decoding` must be one of"):
        load_config(PrefConfig, None, [*base, "compile_decoding=yes please"])
    on_ray = load_config(PrefConfig, None, [*base, "engine=vllm", "executor=ray", "concurrency=4"])
    assert on_ray.executor == "ray" and on_ray.concurrency == 4 and default.executor == "local"
    assert on_ray.generation_fingerprint() == default.generation_fingerprint()  # resumes across executors
    with pytest.raises(ValueError, match="`executor: ray` runs vLLM engines: set `engine: vllm`"):
        load_config(PrefConfig, None, [*base, "executor=ray"])
    with pytest.raises(ValueError, match="`concurrency` must be at least 1"):
        load_config(PrefConfig, None, [*base, "engine=vllm", "executor=ray", "concurrency=0"])
    with pytest.raises(ValueError, match="`executor` must be one of local, ray"):
        load_config(PrefConfig, None, [*base, "executor=slurm"])
    shipped = load_config(PrefConfig, None, [*base, "engine=vllm", "executor=ray", "ship_images=true"])
    assert shipped.ship_images and shipped.generation_fingerprint() == default.generation_fingerprint()
    with pytest.raises(ValueError, match="`ship_images` sends images to Ray's workers: it needs `executor: ray`"):
        load_config(PrefConfig, None, [*base, "ship_images=true"])


@pytest.mark.parametrize(
    "override",
    ["temperature=.nan", "top_p=.inf", "corruptions={low_resolution: .nan}", "corruptions={low_resolution: -.inf}"],
)
def test_a_number_that_is_not_finite_is_refused_where_a_command_reads_numbers(override):
    """Before: temperature=.nan dropped every pair as "empty chosen", and the rerun was refused as changed."""
    with pytest.raises(ValueError, match="finite|must be a number >= 0"):
        load_config(PrefConfig, None, ["model_name_or_path=m", "template=llava", "image_dir=x", override])


def test_a_number_that_is_not_finite_inside_a_list_or_mapping_is_refused():
    from stic_plugin.tools.bench import BenchConfig
    from stic_plugin.tools.demo import DemoConfig

    with pytest.raises(ValueError, match="`batch_sizes` must hold finite numbers only; got nan"):
        load_config(BenchConfig, None, ["batch_sizes=[1, .nan]"])
    with pytest.raises(ValueError, match="`seeds` must hold finite numbers only; got inf"):
        load_config(DemoConfig, None, ["seeds=[[1, .inf]]"])
