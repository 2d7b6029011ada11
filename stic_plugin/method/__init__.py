"""STIC itself, apart from the machinery that runs it: the preference pairs of stage 1 (``pairs``: every
random choice for an image, the record, what is dropped), the corruptions of the dispreferred image
(``corruption``), the infusion of descriptions into instruction data (``infusion``), describe-and-respond
(``dar``), and the one rule that names an image (``keys``). Pure functions and small classes: no file is read
or written here, and no model is loaded.
"""
