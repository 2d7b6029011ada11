"""The generator of a ``stic-cli`` configuration, whichever its ``engine``: every one takes the same requests
(``engine.Request``) and gives the same results (``engine.Generation``) through ``generate`` and
``generate_stream``."""


def load_generator(cfg):
    """``engine: continuous`` or ``plain``: transformers through LLaMA-Factory's loader; ``engine: vllm``: vLLM,
    in this process or (``executor: ray``) on Ray Data's engines."""
    if getattr(cfg, "executor", "local") == "ray":
        from .ray_executor import RayVllmGenerator

        return RayVllmGenerator.from_config(cfg)
    if cfg.engine == "vllm":
        from .vllm_engine import VllmGenerator

        return VllmGenerator.from_config(cfg)
    from .engine import VisionLanguageGenerator

    return VisionLanguageGenerator.from_config(cfg)
