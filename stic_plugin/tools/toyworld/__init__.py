"""A toy world where a tiny vision-language model learns to see, and STIC can be measured working.

``world``: scenes, pictures and their texts; ``scoring``: metrics against the ground truth;
``model``: the tokenizer and the tiny LLaVA; ``data``: the splits on disk; ``steps``: the shipped
commands run as logged, cached steps; ``experiment``: the pipeline and the comparison; ``report``:
``report.md``/``report.json`` and the plots. ``stic-cli demo`` runs it.
"""
