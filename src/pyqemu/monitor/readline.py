"""The HMP line editor, behaving as QEMU's util/readline.c.

Bytes are handled one at a time; after each one the visible line is redrawn the way
QEMU does it (cursor back over the old text with ``ESC [ D``, the new text, ``ESC [ K``,
then cursor moves), so a client sees exactly QEMU's echo. Supported: printable
insert, backspace/DEL, ^A ^E ^D ^W, arrows and Home/End/Delete escape sequences,
history (up/down, 64 entries, duplicates moved to the end), Enter (CR or LF) and TAB
completion of command names.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["ReadLineState"]

CMD_BUF_SIZE = 4095
MAX_CMDS = 64
MAX_COMPLETIONS = 256

_NORM, _ESC, _CSI, _SS3 = range(4)


class ReadLineState:
    """One monitor's line editor; ``output(text)`` receives everything it prints and
    ``on_line(line)`` each completed line."""

    def __init__(self, output: Callable[[str], None], on_line: Callable[[str], None],
                 completer: Callable[[str], tuple[list[str], int]] | None = None) -> None:
        self.output = output
        self.on_line = on_line
        self.completer = completer
        self.prompt = "(qemu) "
        self.buf: list[str] = []
        self.index = 0
        self.last_buf: list[str] = []
        self.last_index = 0
        self.esc_state = _NORM
        self.esc_param = 0
        self.history: list[str] = []
        self.hist_entry = -1

    def show_prompt(self) -> None:
        self.output(self.prompt)
        self.last_index = 0
        self.last_buf = []
        self.esc_state = _NORM

    def restart(self) -> None:
        """Forget the line being typed (readline_restart)."""
        self.buf = []
        self.index = 0

    # ------------------------------------------------------------ redraw
    def _update(self) -> None:
        out: list[str] = []
        if self.buf != self.last_buf:
            out.append("\033[D" * self.last_index)
            out.append("".join(self.buf))
            out.append("\033[K")
            self.last_buf = list(self.buf)
            self.last_index = len(self.buf)
        if self.index != self.last_index:
            delta = self.index - self.last_index
            out.append(("\033[C" * delta) if delta > 0 else ("\033[D" * -delta))
            self.last_index = self.index
        if out:
            self.output("".join(out))

    # ------------------------------------------------------------ editing
    def _insert(self, ch: str) -> None:
        if self.index < CMD_BUF_SIZE:
            self.buf.insert(self.index, ch)
            self.index += 1

    def _delete(self) -> None:
        if self.index < len(self.buf):
            del self.buf[self.index]

    def _backspace(self) -> None:
        if self.index > 0:
            self.index -= 1
            self._delete()

    def _backword(self) -> None:
        if self.index == 0 or self.index > len(self.buf):
            return
        start = self.index - 1
        while start > 0 and self.buf[start].isspace():
            start -= 1
        while start > 0:
            if self.buf[start].isspace():
                start += 1
                break
            start -= 1
        if start < self.index:
            del self.buf[start:self.index]
            self.index = start

    def _hist_up(self) -> None:
        if self.hist_entry == 0:
            return
        if self.hist_entry == -1:
            self.hist_entry = len(self.history)
        self.hist_entry -= 1
        if self.hist_entry >= 0:
            self.buf = list(self.history[self.hist_entry])
            self.index = len(self.buf)

    def _hist_down(self) -> None:
        if self.hist_entry == -1:
            return
        if self.hist_entry < MAX_CMDS - 1 and self.hist_entry + 1 < len(self.history):
            self.hist_entry += 1
            self.buf = list(self.history[self.hist_entry])
        else:
            self.hist_entry = -1
            self.buf = []
        self.index = len(self.buf)

    def _hist_add(self, line: str) -> None:
        if not line:
            return
        if len(self.history) == MAX_CMDS and self.history[-1] == line:
            # QEMU returns early for the last slot of a full history, leaving the
            # history position where it was
            return
        if line in self.history:
            self.history.remove(line)
        elif len(self.history) == MAX_CMDS:
            del self.history[0]
        self.history.append(line)
        self.hist_entry = -1

    def _complete(self) -> None:
        if self.completer is None:
            return
        completions, start = self.completer("".join(self.buf[:self.index]))
        completions = completions[:MAX_COMPLETIONS]
        if not completions:
            return
        if len(completions) == 1:
            word = completions[0]
            for ch in word[start:]:
                self._insert(ch)
            if word and not word.endswith("/"):
                self._insert(" ")
            return
        self.output("\n")
        prefix = len(completions[0])
        width = 0
        for i, c in enumerate(completions):
            if i:
                prefix = min(prefix, len(c))
                for j in range(prefix):
                    if c[j] != completions[0][j]:
                        prefix = j
                        break
            width = max(width, len(c))
        for ch in completions[0][start:prefix]:
            self._insert(ch)
        width = min(max(width + 2, 10), 80)
        cols = 80 // width
        j = 0
        for i, c in enumerate(completions):
            self.output(c.ljust(width))
            j += 1
            if j == cols or i == len(completions) - 1:
                self.output("\n")
                j = 0
        self.show_prompt()

    # ------------------------------------------------------------ input
    def feed(self, data: bytes) -> None:
        for b in data:
            self.handle_byte(b)

    def handle_byte(self, ch: int) -> None:
        st = self.esc_state
        if st == _NORM:
            if ch == 1:
                self.index = 0
            elif ch == 4:
                self._delete()
            elif ch == 5:
                self.index = len(self.buf)
            elif ch == 9:
                self._complete()
            elif ch in (10, 13):
                line = "".join(self.buf)
                self._hist_add(line)
                self.output("\n")
                self.buf = []
                self.index = 0
                self.last_buf = []
                self.last_index = 0
                self.on_line(line)
            elif ch == 23:
                self._backword()
            elif ch == 27:
                self.esc_state = _ESC
            elif ch in (127, 8):
                self._backspace()
            elif ch == 155:
                self.esc_state = _CSI
            elif ch >= 32:
                # bytes >= 0x80 are kept as they are (QEMU works on raw bytes)
                self._insert(chr(ch))
        elif st == _ESC:
            if ch == ord("["):
                self.esc_state = _CSI
                self.esc_param = 0
            elif ch == ord("O"):
                self.esc_state = _SS3
                self.esc_param = 0
            else:
                self.esc_state = _NORM
        elif st == _CSI:
            c = chr(ch)
            if c in "AF":
                self._hist_up()
            elif c in "BE":
                self._hist_down()
            elif c == "D":
                if self.index > 0:
                    self.index -= 1
            elif c == "C":
                if self.index < len(self.buf):
                    self.index += 1
            elif c.isdigit():
                self.esc_param = self.esc_param * 10 + int(c)
                self._update()
                return
            elif c == "~":
                if self.esc_param == 1:
                    self.index = 0
                elif self.esc_param == 3:
                    self._delete()
                elif self.esc_param == 4:
                    self.index = len(self.buf)
            self.esc_state = _NORM
        elif st == _SS3:
            if ch == ord("F"):
                self.index = len(self.buf)
            elif ch == ord("H"):
                self.index = 0
            self.esc_state = _NORM
        self._update()
