"""Rich progress bars (with ETA) for long steps, written to stderr so stdout stays clean."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def progress_bar(description: str, total: int, enabled: bool = True) -> Iterator:
    """Yields ``update(done, fields)``; ``fields`` (a dict) is shown after the bar."""
    if not enabled:
        yield lambda done, fields=None: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = Console(stderr=True)
    cols = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[info]}")]
    start = time.perf_counter()
    last = {"info": ""}
    # Transient: a step that fails leaves only its one-line error; one that succeeds leaves a
    # one-line summary.
    with Progress(*cols, console=console, transient=True) as prog:
        task = prog.add_task(description, total=total, info="")

        def update(done: int, fields: dict | None = None) -> None:
            info = "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in (fields or {}).items())
            last["info"] = info
            prog.update(task, completed=done, info=info)

        yield update
    console.print(f"[bold]{description}[/bold] done in {time.perf_counter() - start:.1f} s  {last['info']}",
                  highlight=False)


def status(message: str) -> None:
    from rich.console import Console

    Console(stderr=True).print(message)
