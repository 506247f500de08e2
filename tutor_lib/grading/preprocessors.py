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
from nbgrader.preprocessors import ClearHiddenTests, Execute
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
    """Execute that retries a kernel that died while starting, names the cell a kernel died in, gives up
    on uninterruptible cells, and caps output (keeping its beginning)."""

    interrupt_grace = Integer(10, help="Seconds a timed-out cell gets to stop after the interrupt").tag(config=True)
    max_output_chars = Integer(100_000, help="Output characters kept per cell while it runs (-1: no limit)").tag(config=True)
    kernel_start_tries = Integer(3, help="Tries to start a kernel that dies before it answers (a busy machine)"
                                 ).tag(config=True)

    def preprocess(self, nb, resources=None, km=None):
        """Execute the notebook, with fresh output counters; start the kernel again if it died while starting.

        A kernel that dies before answering kernel_info never ran a line of the student's code (seen on
        a busy CI machine with several kernels starting at once); trying again keeps that from costing a grade.
        """
        for attempt in range(1, self.kernel_start_tries + 1):
            self._output_chars: dict[int, int] = {}
            self._current = "?"
            try:
                return super().preprocess(nb, resources, km=km)
            except RuntimeError as error:
                if "before replying to kernel_info" not in str(error) or attempt == self.kernel_start_tries:
                    raise
                self.log.warning("the kernel died while starting (try %d of %d); starting another",
                                 attempt, self.kernel_start_tries)
        raise AssertionError("unreachable")

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
        """Keep a cell's output up to max_output_chars (a stream message is cut at a line end), then one
        truncation notice (on stdout); drop the rest."""
        if self.max_output_chars < 0 or msg["msg_type"] not in ("stream", "display_data", "execute_result"):
            return super().output(outs, msg, display_id, cell_index)
        used = self._output_chars.get(cell_index, 0)
        size = _output_size(msg["content"])
        self._output_chars[cell_index] = used + size
        if used + size <= self.max_output_chars:
            return super().output(outs, msg, display_id, cell_index)
        if used > self.max_output_chars:
            return None  # the notice is already there
        if msg["msg_type"] == "stream":
            head = msg["content"]["text"][: self.max_output_chars - used]
            head = head[: head.rfind("\n") + 1] or head  # whole lines, unless the first line is that long
            if head:
                super().output(outs, {**msg, "content": {**msg["content"], "text": head}}, display_id, cell_index)
        outs.append(new_output("stream", name="stdout", text=(
            f"\n... output truncated by the grader: more than {self.max_output_chars} characters ...\n")))
        return None


HIDDEN_NOTICE = "# (hidden tests: not shown)"


def _texts(output) -> list[str]:
    texts = [output.get("text", ""), output.get("evalue", ""), *output.get("traceback", [])]
    for value in output.get("data", {}).values():
        if isinstance(value, str):
            texts += [value, html.unescape(value)]
    return texts


class HideHiddenTests(ClearHiddenTests):
    """For feedback: nbgrader's ClearHiddenTests (its delimiters, from config), leaving a notice where the
    hidden tests were; tracebacks of those cells cut to the error message; outputs that quote them hidden."""

    min_quoted_chars = Integer(16, help="Hidden lines at least this long are searched for in outputs").tag(config=True)

    def preprocess(self, nb, resources):
        """Cut hidden test code out of the notebook's sources and outputs."""
        self._secrets, self._hidden_cells = set(), set()
        nb, resources = super().preprocess(nb, resources)
        for index, cell in enumerate(nb.cells):
            if cell.cell_type == "code":
                cell.outputs = [self._redact(output, index in self._hidden_cells) for output in cell.get("outputs", [])]
        return nb, resources

    def preprocess_cell(self, cell, resources, cell_index):
        """Remove the cell's hidden test regions (nbgrader checks that it is a grade cell)."""
        self._removed = False
        cell, resources = super().preprocess_cell(cell, resources, cell_index)
        if self._removed:
            self._hidden_cells.add(cell_index)
        return cell, resources

    def _remove_hidden_test_region(self, cell) -> bool:
        kept, hidden, inside, removed = [], [], False, False
        for line in cell.source.split("\n"):
            if self.begin_test_delimeter in line:
                if inside:
                    raise RuntimeError("Encountered nested begin hidden tests statements")
                inside = removed = True
                kept.append(line[: len(line) - len(line.lstrip())] + HIDDEN_NOTICE)
            elif self.end_test_delimeter in line:
                inside = False
            elif inside:
                hidden.append(line)
            else:
                kept.append(line)
        if inside:
            raise RuntimeError("No end hidden tests statement found")
        if removed:
            cell.source = "\n".join(kept)
            self._secrets.update(line.strip() for line in hidden if len(line.strip()) >= self.min_quoted_chars)
            self._removed = True
        return removed

    def _redact(self, output, in_hidden_cell: bool):
        if output.output_type == "error" and in_hidden_cell:
            # The traceback quotes the test cell's lines; the error message alone says what went wrong.
            output.traceback = [f"\x1b[0;31m{output.ename}\x1b[0m: {output.evalue}"]
        if any(secret in text for text in _texts(output) for secret in self._secrets):
            return new_output("stream", name="stdout", text="[output hidden: it quotes hidden test code]\n")
        return output
