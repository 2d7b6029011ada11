"""stic-cli's entry point: errors end with a message and exit status 2, not a traceback."""


def test_a_cache_too_large_for_the_gpu_is_a_message_not_a_traceback(monkeypatch, capsys, tmp_path):
    from stic_plugin.commands import cli, pref
    from stic_plugin.generation.continuous import CacheTooLarge

    def run_pref(cfg):
        raise CacheTooLarge(
            "the key/value cache for 256 sequences of up to 2048 tokens needs 256.0 GiB and "
            "60.0 GiB are free: lower batch_size or max_new_tokens"
        )

    monkeypatch.setattr(pref, "run_pref", run_pref)
    code = cli.main(["pref", "model_name_or_path=m", "template=llava", f"image_dir={tmp_path}"])
    assert code == 2
    assert "stic-cli pref: error: the key/value cache for 256 sequences" in capsys.readouterr().err
