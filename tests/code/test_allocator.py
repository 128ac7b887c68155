"""compclip.allocator: freed memory stays in the process, so a step's tensors do not fault their pages in again."""

import subprocess
import sys
import textwrap

import pytest

from compclip.allocator import _mallopt
from tests.conftest import REPO

pytestmark = pytest.mark.skipif(_mallopt() is None, reason="glibc's mallopt only (Linux)")

# 10 tensors of 8 MB, written and freed together, 10 times after 3 rounds of warm-up: the minor page faults
# per round. Each process is fresh: the allocator's settings are process-wide and cannot be undone.
# glibc's defaults adapt to what the process freed before (imports included), so whether they fault these
# rounds back in varies from run to run; the control pins their documented starting values (128 KB).
ROUNDS = textwrap.dedent("""
    import resource, sys, torch
    from compclip.allocator import M_MMAP_THRESHOLD, M_TRIM_THRESHOLD, _mallopt, keep_freed_memory
    import stages
    if sys.argv[1] == "keep":
        assert keep_freed_memory()
    if sys.argv[1] == "glibc":
        assert _mallopt()(M_TRIM_THRESHOLD, 128 * 1024) and _mallopt()(M_MMAP_THRESHOLD, 128 * 1024)
    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    def one_round():
        tensors = [torch.empty(2 * 2**20).fill_(1.0) for _ in range(10)]
        del tensors
    def rounds():
        for _ in range(3):
            one_round()
        before = faults()
        for _ in range(10):
            one_round()
        print((faults() - before) / 10)
    stages.run(rounds) if sys.argv[1] == "stage" else rounds()
""")


def faults_per_round(mode: str) -> float:
    out = subprocess.run([sys.executable, "-c", ROUNDS, mode], cwd=REPO, capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def test_freed_tensors_are_reused_instead_of_faulted_in_again():
    glibc, kept = faults_per_round("glibc"), faults_per_round("keep")
    # glibc's starting thresholds give the 80 MB back when the tensors are freed and fault them in again
    # (20,480 pages of 4 KB): the pattern really exercises what keep_freed_memory changes
    assert glibc > 10_000
    assert kept < 100


def test_every_stage_runs_with_freed_memory_kept():
    assert faults_per_round("stage") < 100  # stages.run, as `python -m stages.<name>` runs a stage


def test_the_settings_are_accepted_and_can_be_made_again():
    code = "from compclip.allocator import keep_freed_memory as k; print(k(), k(64))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True"]
