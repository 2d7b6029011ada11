"""What runs a generator command: the one resumable run (``run``: this process's share, what earlier runs did,
images read ahead on a thread, the engine's stream, the records and the skip log, the exit status) and the
describer that describes each image once (``describer``). Built on ``data`` (files), ``generation`` (engines)
and ``method`` (what STIC does); the commands call it.
"""
