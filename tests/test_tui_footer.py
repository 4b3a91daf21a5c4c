"""The console's footer: Textual's look, without restyling each key as it is mounted."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import pytest
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.dom import DOMNode
from textual.widgets import Footer as TextualFooter
from textual.widgets._footer import FooterKey
from tuikit import until

from runbook.tui.footer import Footer


class Keys(App[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        ("y", "answer('y')", "Yes"),
        ("n", "answer('n')", "No"),
        Binding("ctrl+q", "quit", "Quit"),
    ]

    def __init__(self, footer: TextualFooter) -> None:
        super().__init__()
        self.footer = footer

    def compose(self) -> ComposeResult:
        yield self.footer


def count(app: App[Any], n: int) -> Callable[[], bool]:
    return lambda: len(app.query(FooterKey)) == n


def looks(app: App[Any]) -> list[tuple[object, ...]]:
    """Each key where it is drawn, what it draws, and its classes."""
    return [(key.region, key.render(), sorted(key.classes)) for key in app.query(FooterKey)]


@pytest.mark.parametrize("compact", [False, True])
async def test_the_footer_looks_as_textuals_and_restyles_no_key_as_it_opens(
    compact: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every dialog composes a new footer; Textual's restyled each of its keys twice as it
    was mounted (a class set, then unset), a large part of the time a dialog took to open."""
    restyled: list[DOMNode] = []
    update_styles = App.update_styles

    def counting(app: App[Any], node: DOMNode, animate: bool = True) -> None:
        if isinstance(node, FooterKey):
            restyled.append(node)
        update_styles(app, node, animate)

    monkeypatch.setattr(App, "update_styles", counting)
    seen: dict[type, list[tuple[object, ...]]] = {}
    costs: dict[type, int] = {}
    toggled: dict[type, list[tuple[object, ...]]] = {}
    for cls in (TextualFooter, Footer):
        restyled.clear()
        app = Keys(cls(compact=compact))
        async with app.run_test(size=(80, 4)) as pilot:
            # yes, no, quit, and the command palette's key (Textual keeps it compact)
            await until(pilot, count(app, 4), "the keys")
            await pilot.pause()
            seen[cls], costs[cls] = looks(app), len(restyled)
            app.footer.compact = not compact  # the keys still follow their footer
            await pilot.pause()
            toggled[cls] = looks(app)
    assert seen[Footer] == seen[TextualFooter]
    assert toggled[Footer] == toggled[TextualFooter] != seen[Footer]
    assert costs[TextualFooter] >= 3 and costs[Footer] == 0
