"""The footer of the console and of every dialog: Textual's, made cheaper to open."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Footer as TextualFooter
from textual.widgets._footer import FooterKey


class Footer(TextualFooter):
    """Textual's footer, its keys born in the style they will show.

    A ``FooterKey`` starts out compact and is then bound to its footer's ``compact``: two
    class changes, each restyling the key against the whole stylesheet as soon as it is
    mounted (about 3 ms a key here). A dialog's footer is composed afresh each time it
    opens, so that cost was a large part of opening one. Here a key gets its final style
    before it is mounted, where a class change costs nothing; the binding to ``compact``
    stays, so a later change still shows.
    """

    def compose(self) -> ComposeResult:
        for widget in super().compose():  # a grouped key is yielded too, inside its group
            if isinstance(widget, FooterKey):
                # Textual leaves the command palette's key unbound, and so compact.
                compact = self.compact or widget.has_class("-command-palette")
                widget.set_reactive(FooterKey.compact, compact)
                widget.set_class(compact, "-compact", update=False)
            yield widget
