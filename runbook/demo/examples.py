"""The runbooks ``runbook demo`` can run, and the fleet each one needs.

``runbooks/`` in the repository holds the example runbooks (they are read on GitHub); an
installed wheel has them as ``runbook/examples/`` (pyproject maps one to the other). An
editable install does not honour that mapping, so a checkout is found by its layout.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from runbook.demo.sandbox import DemoFleetError
from runbook.format.model import Runbook

PACKAGE = Path(__file__).resolve().parent.parent
"""The installed ``runbook`` package."""
DEMO_DIR = Path(__file__).resolve().parent

NEXT_RELEASE = "v2.4.1"
"""The release the demo offers to deploy (its hosts serve v2.4.0)."""
SANDBOX_APP_DIR = "srv/app"
"""Where the app lives in each host's sandbox, relative to its home (and working) directory."""

_PLAIN_HOST = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")


def examples_dir() -> Path:
    """``runbook/examples`` when installed, ``<checkout>/runbooks`` when run from a checkout."""
    for candidate in (PACKAGE / "examples", PACKAGE.parent / "runbooks"):
        if candidate.is_dir():
            return candidate
    raise DemoFleetError(
        f"the example runbooks are missing: neither {PACKAGE / 'examples'} nor"
        f" {PACKAGE.parent / 'runbooks'} exists; reinstall runbook"
    )


@dataclass(frozen=True)
class Example:
    """A runbook and the fleet it runs against: hosts, which are broken, routers and pools."""

    name: str
    summary: str
    hosts: tuple[str, ...]
    file: str = ""
    """A bundled example's file name; empty for a runbook given by path."""
    path: Path | None = None
    """A runbook given by path (run in place)."""
    packaged: bool = False
    """True: the file ships inside ``runbook/demo``; False: one of the examples."""
    broken: tuple[str, ...] = ()
    breaks_release: bool = False
    """True: a broken host is fine until the new release runs on it (a bad release, found
    by a smoke test or a bake); False: its health check fails whatever it runs."""
    """Hosts whose health check fails, unless ``--break`` says otherwise."""
    app_dir: str = SANDBOX_APP_DIR
    """Where the app lives in each sandbox; ``.`` is the sandbox itself."""
    pools: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """Colour -> web hosts, for blue-green; the first colour is live at the start."""
    routers: tuple[str, ...] = ()
    """Load balancers that send the live traffic to one pool."""

    def source(self) -> Path:
        """The runbook file."""
        if self.path is not None:
            return self.path
        return (DEMO_DIR if self.packaged else examples_dir()) / self.file

    def values(self, rb: Runbook, webhook: str = "") -> dict[str, str]:
        """The values the demo knows, for the variables ``rb`` declares.

        ``APP_DIR`` always (its real default, ``/srv/app``, is not in a sandbox);
        ``DEPLOYS_WEBHOOK``, the demo's chat channel, once it listens;
        ``VERSION`` only where the runbook offers no default of its own.
        """
        known: dict[str, str] = {}
        for var in rb.variables:
            if var.name == "APP_DIR":
                known[var.name] = self.app_dir
            elif var.name == "DEPLOYS_WEBHOOK" and webhook:
                known[var.name] = webhook
            elif var.name == "VERSION" and var.default is None:
                known[var.name] = NEXT_RELEASE
        return known

    def with_broken(self, hosts: tuple[str, ...]) -> Example:
        """The same fleet with other hosts broken; an unknown host is an error."""
        unknown = [h for h in hosts if h not in self.hosts]
        if unknown:
            raise ValueError(
                f"--break {unknown[0]}: no such host in this demo; its hosts are"
                f" {', '.join(self.hosts)} (or `--break none`)"
            )
        return replace(self, broken=tuple(dict.fromkeys(hosts)))


WEB = ("web1", "web2", "web3", "web4")

EXAMPLES: dict[str, Example] = {
    e.name: e
    for e in (
        Example(
            "deploy",
            "canary and batches on four hosts; web3's health check fails; roll back",
            WEB,
            file="deploy.md",
            packaged=True,
            broken=("web3",),
            app_dir=".",
        ),
        Example(
            "deploy-web",
            "runbooks/deploy-web.md: stage, drain, switch and restart, verify (web-1..web-4)",
            ("web-1", "web-2", "web-3", "web-4"),
            file="deploy-web.md",
            breaks_release=True,
        ),
        Example(
            "blue-green",
            "runbooks/blue-green.md: bring up green, smoke-test, switch the routers, retire blue",
            (*WEB, "lb1", "lb2"),
            file="blue-green.md",
            pools=(("blue", ("web1", "web2")), ("green", ("web3", "web4"))),
            routers=("lb1", "lb2"),
            breaks_release=True,
        ),
    )
}
DEFAULT = "deploy"


def for_runbook(path: Path, rb: Runbook) -> Example:
    """A fleet for any runbook: one host per host it names; blue-green if its groups say so.

    Groups ``blue``, ``green`` and ``router`` make the routers' hosts load balancers
    between the two pools, blue live.
    """
    ssh = [f"{key}: {value}" for key, value in asdict(rb.ssh).items() if value is not None]
    if ssh:
        raise ValueError(
            f"{path}: front matter `ssh:` sets {', '.join(ssh)}; the demo fleet serves its own"
            " user, ports and known_hosts only"
        )
    hosts: list[str] = []
    for group in rb.hosts:
        for host in group.hosts:
            if host.user or host.port or not _PLAIN_HOST.match(host.spec):
                raise ValueError(
                    f"{path}: host `{host.spec}` has a user or a port; the demo fleet serves"
                    " hosts named by plain names only"
                )
            if host.spec not in hosts:
                hosts.append(host.spec)
    if not hosts:
        raise ValueError(
            f"{path} names no hosts, so there is nothing for the demo fleet to serve;"
            f" run it with `runbook run {path}`"
        )
    groups = {g.name: tuple(h.spec for h in g.hosts) for g in rb.hosts}
    pools: tuple[tuple[str, tuple[str, ...]], ...] = ()
    routers: tuple[str, ...] = ()
    if {"blue", "green", "router"} <= groups.keys():
        pools = (("blue", groups["blue"]), ("green", groups["green"]))
        routers = groups["router"]
    return Example(path.name, str(path), tuple(hosts), path=path, pools=pools, routers=routers)


def listing() -> str:
    """One line per example, for ``runbook demo --list``."""
    width = max(len(name) for name in EXAMPLES)
    lines = [
        f"{name:<{width}}  {e.summary}{'  (default)' if name == DEFAULT else ''}"
        for name, e in EXAMPLES.items()
    ]
    return "\n".join(lines) + "\n"
