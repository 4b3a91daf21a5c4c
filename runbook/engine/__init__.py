"""Running a runbook: the session, its attempts, rollouts and bakes, questions, masking.

`session` drives the steps; it hands `rollout`, `bake`, `attempt` and `questions` only the
narrow things they use, so imports point one way (session → rollout → bake/attempt →
questions → recorder/journal). It may import `runbook.format`, `runbook.record`,
`runbook.notify` and `runbook.transports`; never the TUI, the CLI or the demo.
"""
