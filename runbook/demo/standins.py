"""Stand-ins for a site's tools on the demo hosts, so real-looking runbooks run unchanged.

``sudo``, ``systemctl``, ``fetch-release``, ``lb-drain``/``lb-enable``, ``curl``,
``hostname`` and, on a load balancer, ``router`` are small shell scripts (``bin/`` beside
this file) put first on each host's PATH. They keep their state in the host's sandbox and
never reach anything outside the demo's directory: the ``curl`` stand-in answers only the
app's own URLs and refuses every other. The fleet bakes each host's paths into its copies.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path

SOURCES = Path(__file__).resolve().parent / "bin"
MARK = "#@settings@\n"
TOOLS = {
    "sudo": "sudo",
    "systemctl": "systemctl",
    "fetch-release": "fetch-release",
    "lb-drain": "lb",
    "lb-enable": "lb",
    "curl": "curl",
    "hostname": "hostname",
}
"""Tool name -> the script in ``bin/`` that stands in for it."""


def standins(
    host: str,
    home: Path,
    app_dir: str,
    pools: Sequence[tuple[str, Sequence[str]]] = (),
    router: bool = False,
) -> dict[str, str]:
    """Each tool's script for ``host``, its settings baked in (``router`` on a load balancer)."""
    settings = {
        "DEMO_HOST": host,
        "DEMO_HOME": str(home),
        "DEMO_HOSTS_DIR": str(home.parent),
        "APP": str(home / app_dir) if app_dir != "." else str(home),
        "COLOURS": " ".join(colour for colour, _ in pools),
        **{f"POOL_{colour}": " ".join(hosts) for colour, hosts in pools},
    }
    header = "".join(f"{name}={shlex.quote(value)}\n" for name, value in settings.items())
    tools = dict(TOOLS, router="router") if router else TOOLS
    return {name: _fill(source, header) for name, source in tools.items()}


def _fill(source: str, header: str) -> str:
    text = (SOURCES / source).read_text(encoding="utf-8")
    if MARK not in text:
        raise ValueError(f"{SOURCES / source}: no {MARK.strip()} line to put the settings in")
    return text.replace(MARK, header, 1)
