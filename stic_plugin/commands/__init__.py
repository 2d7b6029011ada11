"""The ``stic-cli`` commands (``pref``, ``infuse``, ``dar``, ``demo``, ``bench``), their configurations
(``config``), and the entry point (``cli``)."""
