"""The record: the transcript's events, writing, replaying and verifying it, runs, the report.

A run's transcript is the source of truth; everything here reads or writes it and folds it
into state. It may import `runbook.format` and `runbook.record` only: never the engine, the
transports, notify or the TUI.
"""
