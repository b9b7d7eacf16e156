"""Training threads that share the cores with busy neighbours (edge_albert/core_share.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from edge_albert.core_share import CoreShare, busy_seconds, threads_for

TCK = os.sysconf("SC_CLK_TCK")


def _stat(per_cpu_busy: list[float], idle: float = 500.0) -> str:
    """A /proc/stat text: cpuN user nice system idle iowait irq softirq steal guest guest_nice."""
    lines = ["cpu  1 2 3 4 5 6 7 8 0 0"]
    for i, b in enumerate(per_cpu_busy):
        t = round(b * TCK)
        # busy split over user, system and softirq; iowait and steal are not counted
        lines.append(f"cpu{i} {t - 2} 0 1 {int(idle * TCK)} 77 0 1 99 0 0")
    return "\n".join([*lines, "intr 1 2 3", "ctxt 5"]) + "\n"


def test_busy_seconds_counts_the_named_cpus_busy_columns_only():
    text = _stat([10.0, 20.0, 40.0])
    assert busy_seconds(text, [0]) == pytest.approx(10.0)
    assert busy_seconds(text, [1, 2]) == pytest.approx(60.0)
    assert busy_seconds(text, [7]) == 0.0


@pytest.mark.parametrize("others,cpus,cap,want", [
    (0.0, 2, 2, 2), (0.4, 2, 2, 2), (0.6, 2, 2, 1), (1.0, 2, 2, 1), (2.0, 2, 2, 1),
    (0.0, 8, 4, 4), (5.2, 8, 8, 3), (0.0, 2, 1, 1)])
def test_threads_are_the_cores_the_others_leave(others, cpus, cap, want):
    assert threads_for(others, cpus, cap) == want


class _World:
    """A fake clock, /proc/stat and process CPU time: we use ``own`` cores, others ``others``."""

    def __init__(self) -> None:
        self.t, self.busy, self.cpu = 0.0, [0.0, 0.0], 0.0
        self.own, self.others, self.stat_ok = 2.0, 0.0, True

    def advance(self, seconds: float) -> None:
        self.t += seconds
        self.cpu += self.own * seconds
        share = (self.own + self.others) * seconds / 2
        self.busy = [b + share for b in self.busy]

    def stat(self) -> str | None:
        return _stat(self.busy) if self.stat_ok else None


def test_threads_drop_while_a_neighbour_is_busy_and_come_back_when_it_leaves():
    w, calls = _World(), []
    share = CoreShare(2, calls.append, interval=2.0, read_stat=w.stat, clock=lambda: w.t,
                      cpu_time=lambda: w.cpu, cpus=[0, 1])
    w.advance(1.0)
    assert share.tick() is None  # within the interval: nothing read, nothing set
    w.advance(1.5)
    assert share.tick() is None and share.threads == 2  # alone
    w.own, w.others = 1.0, 1.0  # a neighbour takes a core
    w.advance(2.5)
    assert share.tick() == 1 and calls == [1]
    w.advance(2.5)
    assert share.tick() is None and share.threads == 1  # still there: no call
    w.others = 0.0  # it leaves
    w.advance(2.5)
    assert share.tick() == 2 and calls == [1, 2]


def test_without_proc_stat_the_count_stays_as_configured():
    w, calls = _World(), []
    w.stat_ok = False
    share = CoreShare(2, calls.append, interval=0.0, read_stat=w.stat, clock=lambda: w.t,
                      cpu_time=lambda: w.cpu, cpus=[0, 1])
    w.others = 2.0
    w.advance(5.0)
    assert share.tick() is None and calls == [] and share.threads == 2


@pytest.mark.skipif(not os.path.isfile("/proc/stat"), reason="reads Linux's /proc/stat")
def test_real_spinning_neighbours_are_seen():
    """Real processes spinning on every core we may use: the real readers see them busy."""
    cpus = sorted(os.sched_getaffinity(0))
    spin = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in cpus]
    try:
        time.sleep(0.3)
        calls: list[int] = []
        share = CoreShare(len(cpus) + 1, calls.append, interval=0.5)
        time.sleep(0.6)
        assert share.tick() == 1 and calls == [1]
    finally:
        for p in spin:
            p.kill()
            p.wait()


def test_training_logs_the_thread_changes_and_restores_the_count(bert_teacher, task, tmp_path,
                                                                 monkeypatch):
    torch = pytest.importorskip("torch")
    from edge_albert import training
    from edge_albert.config import DistillConfig
    from edge_albert.distill import run_distill

    from .conftest import FAST

    w = _World()
    w.own, w.others = 1.0, 1.0  # a neighbour on one of the two cores all along

    def fake(max_threads, set_threads):
        def clock() -> float:
            w.advance(1.0)  # every reading is a second later
            return w.t
        return CoreShare(max_threads, set_threads, interval=0.0, read_stat=w.stat, clock=clock,
                         cpu_time=lambda: w.cpu, cpus=[0, 1])

    monkeypatch.setattr(training, "CoreShare", fake)
    before = torch.get_num_threads()
    out = run_distill(DistillConfig(**{**FAST, "threads": 2, "max_steps": 4}, student="tiny"),
                      bert_teacher, *task, tmp_path / "s", progress=False)
    assert out is not None
    log = [json.loads(line) for line in (tmp_path / "s" / "train_log.jsonl").read_text().splitlines()]
    assert {"step": 1, "threads": 1} in log
    assert torch.get_num_threads() == before
    off = run_distill(DistillConfig(**{**FAST, "threads": 2, "max_steps": 4}, student="tiny",
                                    share_cores=False),
                      bert_teacher, *task, tmp_path / "off", progress=False)
    assert off is not None
    assert not any("threads" in r for r in
                   map(json.loads, (tmp_path / "off" / "train_log.jsonl").read_text().splitlines()))
