"""Telling a chat channel how the run goes: the messages, the run's notices, the courier.

The `notify:` schema itself lives in `runbook.format.webhooks` (front matter reads it). This
package may import `runbook.format`, `runbook.record` and `runbook.notify`; never the engine.
"""
