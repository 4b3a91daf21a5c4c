"""Reading a runbook: the model, the parser, front matter, options, values, lint and plan.

Everything here is pure: it turns Markdown (and the operator's `--var` values) into frozen
dataclasses and diagnostics. It may import only `runbook.format` itself.
"""
