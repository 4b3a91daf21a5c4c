"""``notify:`` webhooks in the front matter: their schema, checked where it is written.

A runbook's webhooks are read and linted with the rest of it; what they are sent is
:mod:`runbook.notify.messages`, delivery :mod:`runbook.notify.webhook`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from runbook.format.model import Duration, Position, Runbook, Severity, Webhook
from runbook.format.values import (
    ValueProblem,
    describe,
    did_you_mean,
    expand,
    parse_count,
    parse_duration,
    parse_text,
    variable_refs,
)
from runbook.format.yamlstrict import YList, YMap

EVENTS = ("run-start", "gate-waiting", "step-done", "failure", "rollback", "run-end")
WEBHOOK_KEYS = ("url", "events", "headers", "timeout", "retries", "name")
MAX_TIMEOUT = 60.0
MAX_RETRIES = 10
# Set by runbook itself; a header of the runbook's must not contradict them.
RESERVED_HEADERS = frozenset({"host", "content-length", "content-type", "connection"})
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")

Report = Callable[[Position, Severity, str], None]


def read_notify(value: Any, pos: Position, report: Report) -> list[Webhook]:
    """The ``notify:`` list; every problem is reported where it was written."""
    if value is None:
        return []
    if not isinstance(value, YList):
        report(
            pos, "error", f"`notify` must be a list of webhooks (- url: ...), got {describe(value)}"
        )
        return []
    hooks = []
    for item, ipos in zip(value, value.item_pos, strict=True):
        if not isinstance(item, YMap):
            report(
                ipos,
                "error",
                f"a `notify` entry must be a mapping with `url:`, got {describe(item)}",
            )
            continue
        hook = _read_webhook(item, ipos, report)
        if hook is not None:
            hooks.append(hook)
    return hooks


def _read_webhook(item: YMap, pos: Position, report: Report) -> Webhook | None:
    fields: dict[str, Any] = {}
    ok = True

    def problem(at: Position, message: str) -> None:
        nonlocal ok
        ok = False
        report(at, "error", f"notify: {message}")

    for key, value in item.items():
        kpos, vpos = item.key_pos[key], item.value_pos[key]
        if key not in WEBHOOK_KEYS:
            problem(kpos, f"unknown setting `{key}`{did_you_mean(key, WEBHOOK_KEYS)}")
            continue
        try:
            if key == "url":
                fields["url"] = parse_text(value).strip()
                for severity, message in url_problems(fields["url"]):
                    if severity == "error":
                        problem(vpos, message)
                    else:
                        report(vpos, "warning", f"notify: {message}")
            elif key == "events":
                fields["events"] = _read_events(value, vpos, problem)
            elif key == "headers":
                fields["headers"] = _read_headers(value, vpos, item, problem)
            elif key == "timeout":
                fields["timeout"] = _timeout(value)
            elif key == "retries":
                fields["retries"] = parse_count(value)
                if fields["retries"] > MAX_RETRIES:
                    raise ValueProblem(f"at most {MAX_RETRIES}")
            else:
                fields["name"] = parse_text(value).strip()
        except ValueProblem as e:
            problem(vpos, f"`{key}`: {e}")
    if "url" not in fields and ok:
        problem(pos, "a webhook needs a `url:`")
    if not ok:
        return None
    fields.setdefault("events", EVENTS)
    return Webhook(line=pos.line, col=pos.col, **fields)


def _timeout(value: Any) -> Duration:
    d = parse_duration(value)
    if not 0 < d.seconds <= MAX_TIMEOUT:
        raise ValueProblem(f"must be more than 0s and at most {MAX_TIMEOUT:.0f}s")
    return d


def _read_events(
    value: Any, pos: Position, problem: Callable[[Position, str], None]
) -> tuple[str, ...]:
    if isinstance(value, YList):
        items = [(v, p) for v, p in zip(value, value.item_pos, strict=True)]
    elif isinstance(value, str):
        items = [(v.strip(), pos) for v in value.split(",")]
    else:
        raise ValueProblem(
            f"expected a list of events ({', '.join(EVENTS)}), got {describe(value)}"
        )
    events: list[str] = []
    for name, at in items:
        text = parse_text(name).strip() if name is not None else ""
        if text == "all":
            events.extend(EVENTS)
        elif text not in EVENTS:
            problem(
                at,
                f"unknown event `{text}`{did_you_mean(text, EVENTS)}; known: {', '.join(EVENTS)}",
            )
        else:
            events.append(text)
    if not events and not items:
        raise ValueProblem("an empty list would send nothing; leave `events` out to send all")
    return tuple(dict.fromkeys(events))


def _read_headers(
    value: Any, pos: Position, item: YMap, problem: Callable[[Position, str], None]
) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, YMap):
        raise ValueProblem(f"expected a mapping of header names to values, got {describe(value)}")
    headers: list[tuple[str, str]] = []
    for name, text in value.items():
        kpos = value.key_pos[name]
        if not isinstance(name, str) or not _TOKEN.match(name):
            problem(kpos, f"`{name}` is not an HTTP header name")
            continue
        if name.lower() in RESERVED_HEADERS:
            problem(kpos, f"header `{name}` is set by runbook itself")
            continue
        try:
            header = parse_text(text)
        except ValueProblem as e:
            problem(value.value_pos[name], f"header `{name}`: {e}")
            continue
        if "\n" in header or "\r" in header:
            problem(value.value_pos[name], f"header `{name}` must be one line")
            continue
        headers.append((name, header))
    return tuple(headers)


def url_problems(url: str) -> list[tuple[Severity, str]]:
    """What is wrong with a webhook URL as written; ``$VARS`` are checked at run time.

    A URL that starts with a variable (``$DEPLOYS_WEBHOOK``) cannot be checked before
    the run; one with variables in its path is checked with them standing for ``x``.
    """
    if url.startswith("$"):
        return []
    literal = expand(url, {}, unknown="x")
    problem = check_url(literal)
    if problem is not None:
        return [("error", problem)]
    parts = urlsplit(literal)
    if parts.scheme == "http" and not is_loopback(parts.hostname or ""):
        return [("warning", f"`{url}` is plain http: the messages and headers travel unencrypted")]
    return []


def check_url(url: str) -> str | None:
    """Why ``url`` cannot take a webhook POST, or None."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        return f"`{url}` is not a valid URL: {e}"
    if parts.scheme not in ("http", "https"):
        return f"`{url}` is not an http:// or https:// URL"
    if not parts.hostname:
        return f"`{url}` has no host"
    if parts.username is not None or parts.password is not None:
        return f"`{url}`: credentials in the URL are not sent; put them in `headers:`"
    if port == 0:
        return f"`{url}`: port 0"
    if any(c.isspace() for c in url):
        return f"`{url}` contains white space"
    return None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def origin(url: str) -> str:
    """``scheme://host[:port]`` only: the path and query of a webhook are often its secret."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def references(rb: Runbook) -> list[tuple[Webhook, str]]:
    """Every ``$VAR`` a webhook uses in its URL or headers."""
    refs: list[tuple[Webhook, str]] = []
    for hook in rb.notify:
        for text in (hook.url, *(v for _, v in hook.headers)):
            refs.extend((hook, name) for name, _ in variable_refs(text))
    return refs
