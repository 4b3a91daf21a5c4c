"""Textual's Linux driver, made to survive the terminal going away.

When the terminal closes (SIGHUP: a window closed, an ssh session to the controller
dropped), Textual's writer thread dies on the first write that fails, and the next 30
writes fill its queue and block the app's thread for ever: the engine, on the same thread,
could then never stop the running blocks nor record the run's end. Here a write after
the writer died is dropped instead; the app also points the terminal's descriptors at
``/dev/null`` on SIGHUP (``RunbookApp.signalled``), so the writer need not die at all.
"""

from __future__ import annotations

from textual.drivers.linux_driver import LinuxDriver


class HangupSafeDriver(LinuxDriver):
    """Draws like LinuxDriver until the terminal is gone; then drops what it would draw."""

    def _writer_died(self) -> bool:
        writer = self._writer_thread  # Textual's own; a dead one can only block us
        return writer is not None and not writer.is_alive()

    def write(self, data: str) -> None:
        if not self._writer_died():
            super().write(data)

    def close(self) -> None:
        if not self._writer_died():  # stopping a dead writer would wait on its queue
            super().close()
