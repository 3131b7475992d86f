"""The fault-injection hook kills the process at the named step (and only there)."""

from __future__ import annotations

import signal
import subprocess
import sys

SCRIPT = """
from datathon.core import faults
for i in range(3):
    faults.point("demo.step")
    print("passed", i, flush=True)
"""


def run(env_value: str | None) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin"}
    if env_value is not None:
        env["DATATHON_DIE_AT"] = env_value
    return subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=60)


def test_unset_runs_through():
    out = run(None)
    assert out.returncode == 0 and out.stdout.count("passed") == 3


def test_dies_at_the_nth_time_with_sigkill():
    out = run("other.step, demo.step@2")
    assert out.returncode == -signal.SIGKILL
    assert out.stdout.splitlines() == ["passed 0"]


def test_dies_at_first_time_without_count():
    out = run("demo.step")
    assert out.returncode == -signal.SIGKILL and out.stdout == ""
