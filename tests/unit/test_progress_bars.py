"""Progress bars on long steps show on a terminal only (issue 16.5), and never change what is computed."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from pipeline.scoring import progress
from pipeline.scoring.batch import score_high_risk
from tests.unit.test_scoring_batch import THRESHOLD, bundle, raw_frame

REPO = Path(__file__).resolve().parents[2]
SNIPPET = (
    "from pipeline.scoring.progress import bar\n"
    "with bar(3, 'sweep s1', 'job') as b:\n"
    "    for _ in range(3): b.update(1)\n"
)


def _on_a_terminal(env: dict[str, str]) -> str:
    """Run SNIPPET with stdout and stderr on a pseudo-terminal; what the terminal showed."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: stderr is the pty, 80 columns wide (a fresh pty has 0: tqdm would draw nothing)
        fcntl.ioctl(2, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        os.chdir(REPO)
        os.execve(sys.executable, [sys.executable, "-c", SNIPPET], {**os.environ, **env})
    chunks = []
    while True:
        try:
            data = os.read(fd, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.waitpid(pid, 0)
    os.close(fd)
    return b"".join(chunks).decode(errors="replace")


def test_a_bar_shows_on_a_terminal_and_not_when_piped_or_quiet() -> None:
    shown = _on_a_terminal({"TQDM_DISABLE": "1"})  # keel's own setting (for GE's bars) does not hide ours
    assert "sweep s1: 100%" in shown and "3/3" in shown, shown
    assert _on_a_terminal({"KEEL_PROGRESS": "0"}) == ""  # keel -q
    piped = subprocess.run([sys.executable, "-c", SNIPPET], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert piped.returncode == 0 and piped.stdout == "" and piped.stderr == ""


def test_reasons_in_chunks_behind_a_bar_are_the_reasons_of_one_call(monkeypatch: pytest.MonkeyPatch) -> None:
    b, frame = bundle(), raw_frame()
    whole = score_high_risk(b, frame, "subscriber_id", THRESHOLD).frame
    monkeypatch.setattr(progress, "REASON_CHUNK", 7)  # many chunks over the listed rows
    monkeypatch.setenv(progress.PROGRESS_ENV, "1")  # the bar shows (on pytest's stderr): the chunked path runs
    chunked = score_high_risk(b, frame, "subscriber_id", THRESHOLD).frame
    assert len(whole) > 7 * 3
    assert chunked["reasons"].tolist() == whole["reasons"].tolist()
