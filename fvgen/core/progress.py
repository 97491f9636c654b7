"""Progress of long steps on stderr (stdout stays clean): a rich bar with ETA on a terminal, plain
lines elsewhere (``nohup``, ``| tee``, CI logs), where a redrawn bar would print nothing useful.

Nothing is shown until the step reports its first progress: a stage that turns out to be cached
never calls ``update`` and so shows no bar and no "done" line.
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import Callable, Iterator, TextIO

PLAIN_EVERY_FRACTION = 0.1  # a plain line every 10 % of the total...
PLAIN_EVERY_SECONDS = 30.0  # ...or every 30 s, whichever comes first


def _format_fields(fields: dict | None) -> str:
    return "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in (fields or {}).items())


def _format_seconds(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


class _PlainProgress:
    """Lines ``DESC  done/total (p %)  elapsed  eta  fields`` every 10 % of the total or 30 s."""

    def __init__(self, description: str, total: int, stream: TextIO, clock: Callable[[], float]):
        self.description, self.total, self.stream, self.clock = description, max(1, int(total)), stream, clock
        self.start = clock()
        self.last_time = self.start
        self.last_tenth = 0  # the tenths of the total are counted in integers: no float drift

    def update(self, done: int, info: str) -> None:
        now = self.clock()
        fraction = min(1.0, done / self.total)
        if done <= 0 or fraction >= 1.0:  # the start says nothing; the end is the "done" line
            return
        tenth = int(done * round(1 / PLAIN_EVERY_FRACTION) // self.total)
        if tenth <= self.last_tenth and now - self.last_time < PLAIN_EVERY_SECONDS:
            return
        elapsed = now - self.start
        eta = elapsed * (1 - fraction) / fraction
        line = (f"{self.description}  {done}/{self.total} ({100 * fraction:.0f} %)  elapsed "
                f"{_format_seconds(elapsed)}  eta {_format_seconds(eta)}")
        print(f"{line}  {info}".rstrip(), file=self.stream, flush=True)
        self.last_time, self.last_tenth = now, tenth


@contextmanager
def progress_bar(description: str, total: int, enabled: bool = True, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.perf_counter) -> Iterator[Callable]:
    """Yields ``update(done, fields)``; ``fields`` (a dict) is shown after the bar. The bar (or, when
    ``stream`` -- stderr by default -- is not a terminal, plain lines) starts on the first call;
    after a step that reported progress, one line ``DESC done in S s  fields`` stays."""
    stream = stream if stream is not None else sys.stderr
    state: dict = {"info": "", "shown": False, "bar": None, "plain": None, "start": clock()}
    if not enabled:
        yield lambda done, fields=None: None
        return
    tty = hasattr(stream, "isatty") and stream.isatty()

    def update(done: int, fields: dict | None = None) -> None:
        info = _format_fields(fields)
        state["info"] = info
        if not state["shown"]:
            state["shown"] = True
            if tty:
                state["bar"] = _start_bar(description, total, stream)
            else:
                state["plain"] = _PlainProgress(description, total, stream, clock)
        if state["bar"] is not None:
            prog, task = state["bar"]
            prog.update(task, completed=done, info=info)
        else:
            state["plain"].update(done, info)

    try:
        yield update
    finally:
        if state["bar"] is not None:
            state["bar"][0].stop()  # transient: a failed step leaves only its one-line error
    if state["shown"]:
        line = f"{description} done in {clock() - state['start']:.1f} s  {state['info']}".rstrip()
        if tty:
            from rich.console import Console

            Console(file=stream).print(f"[bold]{description}[/bold]{line[len(description):]}", highlight=False)
        else:
            print(line, file=stream, flush=True)


def _start_bar(description: str, total: int, stream: TextIO):
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    cols = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[info]}")]
    prog = Progress(*cols, console=Console(file=stream), transient=True)
    prog.start()
    return prog, prog.add_task(description, total=total, info="")


def status(message: str) -> None:
    from rich.console import Console

    Console(stderr=True).print(message)


def notice(message: str, stream: TextIO | None = None) -> None:
    """One plain line on stderr that tells the user what was used (not an error)."""
    print(f"note: {message}", file=stream if stream is not None else sys.stderr, flush=True)
