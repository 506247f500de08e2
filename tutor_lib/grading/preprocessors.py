"""nbgrader preprocessors the course adds (named in nbgrader_config.py).

GuardedExecute   nbgrader's Execute, plus: a kernel that ignores the timeout interrupt or dies is
                 reported with the cell it happened in, and a cell's output is capped while it runs.
HideHiddenTests  for feedback: hidden test code is cut from the test cells, their tracebacks are
                 reduced to the error message, and any output that quotes hidden test code is hidden.
"""

from __future__ import annotations

import html
from queue import Empty

from nbclient.exceptions import DeadKernelError
from nbclient.util import ensure_async
from nbformat.v4 import new_output
from nbgrader.preprocessors import Execute, NbGraderPreprocessor
from nbgrader.preprocessors.execute import UnresponsiveKernelError
from traitlets import Integer

# Why the last notebook could not be executed; read by the worker after nbgrader returns.
_failure: list[str] = []


def reset_failure() -> None:
    """Forget the failure recorded for the previous notebook."""
    _failure.clear()


def last_failure() -> str | None:
    """Why the last notebook could not be executed (kernel death, ignored interrupt), or None."""
    return _failure[-1] if _failure else None


def cell_label(cell, index: int) -> str:
    """A cell's name for messages: its nbgrader grade_id, else its cell id, else its position."""
    grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
    return grade_id or cell.get("id") or f"#{index + 1}"


def _output_size(content: dict) -> int:
    if "text" in content:
        return len(content["text"])
    return sum(len(value) if isinstance(value, str) else len(str(value)) for value in content.get("data", {}).values())


class GuardedExecute(Execute):
    """Execute that names the cell a kernel died in, gives up on uninterruptible cells, and caps output."""

    interrupt_grace = Integer(10, help="Seconds a timed-out cell gets to stop after the interrupt").tag(config=True)
    max_output_chars = Integer(100_000, help="Output characters kept per cell while it runs (-1: no limit)").tag(config=True)

    def preprocess(self, nb, resources=None, km=None):
        """Execute the notebook, with fresh output counters."""
        self._output_chars: dict[int, int] = {}
        self._current = "?"
        return super().preprocess(nb, resources, km=km)

    def preprocess_cell(self, cell, resources, index):
        """Execute one cell; a dead kernel is recorded with the cell's name."""
        self._current = cell_label(cell, index)
        try:
            return super().preprocess_cell(cell, resources, index)
        except DeadKernelError:
            _failure.append(f"the kernel died while running cell {self._current} (os._exit, a crash, or out of memory)")
            raise

    async def _async_handle_timeout(self, timeout, cell=None):
        reply = await super()._async_handle_timeout(timeout, cell)  # interrupts the kernel
        # An interrupted cell answers its execute request; a loop that swallows KeyboardInterrupt never does.
        try:
            await ensure_async(self.kc.shell_channel.get_msg(timeout=self.interrupt_grace))
        except Empty:
            _failure.append(f"cell {self._current} ran past the {timeout} s limit and ignored the interrupt "
                            "(a loop that catches KeyboardInterrupt?)")
            raise UnresponsiveKernelError(_failure[-1]) from None
        return reply

    def output(self, outs, msg, display_id, cell_index):
        """Keep a cell's output until it passes max_output_chars, then one truncation notice (on stdout)."""
        if self.max_output_chars >= 0 and msg["msg_type"] in ("stream", "display_data", "execute_result"):
            used = self._output_chars.get(cell_index, 0)
            self._output_chars[cell_index] = used + _output_size(msg["content"])
            if self._output_chars[cell_index] > self.max_output_chars:
                if used <= self.max_output_chars:
                    outs.append(new_output("stream", name="stdout", text=(
                        f"\n... output truncated by the grader: more than {self.max_output_chars} characters ...\n")))
                return None
        return super().output(outs, msg, display_id, cell_index)


BEGIN, END = "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"
HIDDEN_NOTICE = "# (hidden tests: not shown)"


def split_hidden(source: str) -> tuple[str, list[str]]:
    """A cell's source without its hidden test regions, and the hidden lines themselves."""
    kept, hidden, inside = [], [], False
    for line in source.split("\n"):
        if BEGIN in line:
            inside = True
            kept.append(line[: len(line) - len(line.lstrip())] + HIDDEN_NOTICE)
        elif END in line:
            inside = False
        elif inside:
            hidden.append(line)
        else:
            kept.append(line)
    return "\n".join(kept), hidden


def _texts(output) -> list[str]:
    texts = [output.get("text", ""), output.get("evalue", ""), *output.get("traceback", [])]
    for value in output.get("data", {}).values():
        if isinstance(value, str):
            texts += [value, html.unescape(value)]
    return texts


class HideHiddenTests(NbGraderPreprocessor):
    """For feedback: remove hidden tests from sources, tracebacks and any output that quotes them."""

    min_quoted_chars = Integer(16, help="Hidden lines at least this long are searched for in outputs").tag(config=True)

    def preprocess(self, nb, resources):
        """Cut hidden test code out of the notebook's sources and outputs."""
        secrets, hidden_cells = set(), set()
        for index, cell in enumerate(nb.cells):
            if cell.cell_type == "code" and BEGIN in cell.source:
                cell.source, hidden = split_hidden(cell.source)
                secrets.update(line.strip() for line in hidden if len(line.strip()) >= self.min_quoted_chars)
                hidden_cells.add(index)
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            outputs = []
            for output in cell.get("outputs", []):
                if output.output_type == "error" and index in hidden_cells:
                    # The traceback quotes the test cell's lines; the error message alone says what went wrong.
                    output.traceback = [f"\x1b[0;31m{output.ename}\x1b[0m: {output.evalue}"]
                if any(secret in text for text in _texts(output) for secret in secrets):
                    output = new_output("stream", name="stdout", text="[output hidden: it quotes hidden test code]\n")
                outputs.append(output)
            cell.outputs = outputs
        return nb, resources
