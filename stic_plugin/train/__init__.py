"""What plugs into LLaMA-Factory's training: the ``stic_*`` options, the loss, the trainer and the ``stic_dpo`` stage.

Imports nothing from ``stic_plugin.commands`` or ``stic_plugin.generation``; ``stic_plugin.patches`` puts these
pieces into LLaMA-Factory.
"""
