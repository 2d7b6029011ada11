"""Data and output: the dataset formatters, the input readers, description infusion, scoring, and the
sharded, resumable output of every generator run. Built on ``stic_plugin.generation``; imports nothing
from ``stic_plugin.commands``.
"""
