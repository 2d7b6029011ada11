"""STIC in LLaMA-Factory's web UI (LlamaBoard). Imports ``stic_plugin.commands.config`` for the keys of every
command, never the reverse.

    locales.py       labels and help texts (English and Chinese; the other languages fall back to English)
    command_line.py  the stic-cli command line built from a form and the command's configuration class
    process.py       the child process: start, log, the command's own progress bar, abort
    results.py       what a run wrote: summary, lengths plot, a preview of a few records
"""
