"""STIC in LLaMA-Factory's web UI (LlamaBoard): the ``stic_*`` options in the Train tab, and a "STIC data" tab
that runs ``stic-cli pref``, ``infuse`` and ``dar`` in a child process and shows what they wrote.

``stic_plugin.patches`` puts these pieces into the web UI (each patch with its revert); nothing here patches
anything. Imports ``stic_plugin.commands.config`` for the keys of every command, never the reverse.

    locales.py       labels and help texts (English and Chinese; the other languages fall back to English)
    train_tab.py     the "STIC" accordion of the Train tab, its values in the training arguments, its checks
    command_line.py  the stic-cli command line built from the form and the command's configuration class
    process.py       the child process: start, log, the command's own progress bar, abort
    results.py       what a run wrote: summary, lengths plot, a preview of a few records
    data_tab.py      the "STIC data" tab
"""
