"""Generation with a vision-language model: the engines (plain and continuous batching), images and
their corruptions, and the per-image random plans. Imports nothing from ``stic_plugin.data`` or
``stic_plugin.commands``.
"""
