"""Progress off a terminal: plain lines every 10 % (or 30 s), nothing for a step that never ran."""

import io

import pytest

from fvgen.core.progress import progress_bar


class FakeClock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_plain_lines_every_tenth_with_eta_and_figures():
    out, clock = io.StringIO(), FakeClock()
    with progress_bar("fit 3DGS", 500, stream=out, clock=clock) as update:
        for step in range(1, 501):
            clock.t += 0.5
            update(step, {"loss": 0.1234567, "gaussians": 900})
    lines = out.getvalue().splitlines()
    assert "\x1b" not in out.getvalue() and "\r" not in out.getvalue()  # lines, not a redrawn bar
    assert len(lines) == 10  # 10 %, 20 % ... 90 %, then the "done" line
    assert lines[0].startswith("fit 3DGS  50/500 (10 %)  elapsed 24s  eta 3m40s  loss 0.1235  gaussians 900")
    assert lines[8].startswith("fit 3DGS  450/500 (90 %)")
    assert lines[-1] == "fit 3DGS done in 250.0 s  loss 0.1235  gaussians 900"


def test_plain_line_every_30_seconds_on_a_slow_step():
    out, clock = io.StringIO(), FakeClock()
    with progress_bar("generate", 1000, stream=out, clock=clock) as update:
        for step in range(1, 21):
            clock.t += 10.0
            update(step)
    lines = out.getvalue().splitlines()
    assert [ln.split("  ")[1] for ln in lines[:-1]] == ["4/1000 (0 %)", "7/1000 (1 %)", "10/1000 (1 %)",
                                                      "13/1000 (1 %)", "16/1000 (2 %)", "19/1000 (2 %)"]


def test_cached_step_shows_nothing():
    out = io.StringIO()
    with progress_bar("fit 3DGS", 500, stream=out):
        pass  # a cached stage never reports progress
    assert out.getvalue() == ""


def test_failed_step_leaves_no_done_line():
    out, clock = io.StringIO(), FakeClock()
    with pytest.raises(RuntimeError):
        with progress_bar("fit 3DGS", 10, stream=out, clock=clock) as update:
            clock.t += 1
            update(5)
            raise RuntimeError("boom")
    assert "done" not in out.getvalue() and "5/10" in out.getvalue()


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_terminal_gets_the_bar_then_one_done_line():
    out = FakeTerminal()
    with progress_bar("fit 3DGS", 10, stream=out) as update:
        for step in range(1, 11):
            update(step, {"loss": 0.5})
    import re

    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())
    assert "━" in text  # the bar was drawn
    assert "fit 3DGS done in " in text and "loss 0.5" in text and "[bold]" not in text
    assert "1/10 (10 %)" not in text  # no plain lines on a terminal
    out = FakeTerminal()
    with progress_bar("fit 3DGS", 10, stream=out):
        pass
    assert out.getvalue() == ""
