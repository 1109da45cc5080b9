"""The local engine's guarantees: every unit once, crash isolation, timeouts, propagation."""

from __future__ import annotations

import time

import pytest

from pixelmill.engines import UnitFailure, get_engine
from pixelmill.engines.local import LocalEngine
from tests.engines import _units


@pytest.fixture(scope="module")
def engine():
    with LocalEngine(workers=2) as eng:
        yield eng


def test_every_unit_once(engine):
    results = dict(engine.map(_units.square, range(50)))
    assert results == {i: i * i for i in range(50)}


def test_empty_input(engine):
    assert list(engine.map(_units.square, [])) == []


def test_segfault_fails_one_unit_only(engine):
    results = dict(engine.map(_units.crash_on_three, range(8), batch_size=4))
    assert isinstance(results[3], UnitFailure)
    assert "SIGSEGV" in results[3].reason
    assert {k: v for k, v in results.items() if k != 3} == {i: i for i in range(8) if i != 3}


def test_timeout_kills_only_that_unit(engine):
    t0 = time.monotonic()
    results = dict(engine.map(_units.sleep_on_two, range(4), timeout=2))
    assert time.monotonic() - t0 < 20
    assert isinstance(results[2], UnitFailure) and results[2].kind == "timeout"
    assert [results[i] for i in (0, 1, 3)] == [0, 1, 3]


def test_exception_propagates_with_type(engine):
    with pytest.raises(KeyError, match="bad unit 5"):
        list(engine.map(_units.raise_on_five, range(10)))
    # the engine is still usable afterwards
    assert dict(engine.map(_units.square, [3])) == {0: 9}


def test_get_engine_rejects_unknown_name():
    with pytest.raises(ValueError, match="unknown engine 'sparky'"):
        get_engine("sparky")


# ---- batch planning (shared by every engine) ---------------------------------------------
@pytest.mark.parametrize("n,workers", [(1, 1), (7, 2), (400, 2), (1000, 3), (10_000, 16)])
def test_plan_batches_covers_every_unit_once_in_order(n, workers):
    from pixelmill.engines import plan_batches

    batches = plan_batches(n, workers)
    assert [i for b in batches for i in b] == list(range(n))
    sizes = [len(b) for b in batches]
    assert sizes == sorted(sizes, reverse=True)  # never grows: large first, small at the end


def test_plan_batches_shrink_towards_the_end():
    from pixelmill.engines import auto_batch_size, plan_batches

    sizes = [len(b) for b in plan_batches(400, 2)]
    assert sizes[0] == auto_batch_size(400, 2) == 25
    assert sizes[-1] == 1
    # the last batch any worker takes is small: the tail where one worker idles is short
    assert max(sizes[-4:]) <= 2
    # each batch is at most a quarter of what was left when it was cut (2 workers)
    left = 400
    for s in sizes:
        assert s <= -(-left // 4)
        left -= s


def test_plan_batches_tail_floor_for_spark():
    """Spark runs each batch as a job of its own (~30-50 ms of driver time): its batches hold
    up to 128 units and stop shrinking at a quarter of that, so the 2,000-photo thumbnail job
    runs 21 jobs, not 45 (a tail of 1-unit jobs cost it ~10 % of its speed)."""
    from pixelmill.engines import plan_batches
    from pixelmill.engines.spark import SPARK_BATCH_CAP

    old = plan_batches(2000, 2, per_worker_tasks=4)
    new = plan_batches(2000, 2, per_worker_tasks=4, cap=SPARK_BATCH_CAP, tail_floor=4)
    assert (len(old), len(new)) == (45, 21)
    sizes = [len(b) for b in new]
    assert [i for b in new for i in b] == list(range(2000))
    assert sizes[0] == 128 and min(sizes[:-1]) == 32  # the last batch takes what is left
    # few units: small batches still (a tail of heavy units stays balanced)
    assert [len(b) for b in plan_batches(40, 2, per_worker_tasks=4, cap=128, tail_floor=4)] == [
        5, 5, 5, 5, 5, 4, 3, 2, 2, 1, 1, 1, 1]


def test_plan_batches_explicit_size_and_timeout_are_exact():
    from pixelmill.engines import plan_batches

    assert [len(b) for b in plan_batches(10, 2, 4)] == [4, 4, 2]
    assert plan_batches(3, 2, timeout=5.0) == [[0], [1], [2]]


@pytest.mark.parametrize("how", ["script", "stdin"])
def test_workers_that_cannot_start_are_one_clear_error(tmp_path, how):
    """A script without the `__main__` guard (or code on stdin) made every worker die while
    importing the main module; each unit became a 'crash' row and the job 'succeeded'."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("from pixelmill.engines.local import LocalEngine\n"
            "with LocalEngine(workers=1) as eng:\n"
            "    print(list(eng.map(abs, [-1, -2])))\n")
    script = tmp_path / "job.py"
    script.write_text(code)
    root = str(Path(__file__).resolve().parents[2])
    argv = [sys.executable, str(script)] if how == "script" else [sys.executable, "-"]
    proc = subprocess.run(argv, input=None if how == "script" else code, text=True,
                          capture_output=True, cwd=tmp_path, timeout=120,
                          env={**__import__("os").environ, "PYTHONPATH": root})
    assert proc.returncode != 0
    assert "worker processes could not start" in proc.stderr, proc.stderr[-2000:]
    assert 'if __name__ == "__main__":' in proc.stderr
    assert "UnitFailure" not in proc.stdout
