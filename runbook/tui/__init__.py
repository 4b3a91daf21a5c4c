"""The Textual console: ``runbook FILE``, ``runbook resume`` on a terminal, ``runbook demo``."""
