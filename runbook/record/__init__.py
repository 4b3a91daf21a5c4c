"""The record: the transcript's events, writing, replaying and verifying it, runs, the report.

A run's transcript is the source of truth; everything here reads or writes it and folds it
into state. It may import `runbook.format` and `runbook.record` only: never the engine, the
transports, notify or the TUI.
"""

ENV_SIGNING_KEY = "RUNBOOK_SIGNING_KEY"
"""The environment variable that names a signing key, as ``--signing-key`` does. Here, not in
``signing``, so that a run without a key need not import the signer (3 ms of start-up)."""
