"""``keep_freed_memory``: in-process work stops faulting in every large block afresh.

``pixelmill upscale`` (an image upscaled whole), ``sr eval`` and ``sr fuse`` compute in the
command's own process, where glibc maps each block over 128 KiB afresh and unmaps it when it is
freed: EDSR x2 on a 1-megapixel image spent 2.0 s of 3.2 s on such page faults. The reference
here is the kernel's own count of this process's page faults.
"""

from __future__ import annotations

import resource

import numpy as np
import pytest

from pixelmill.engines.local import _mallopt, keep_freed_memory

pytestmark = pytest.mark.skipif(_mallopt() is None, reason="glibc only")


def _faults_of_a_fresh_64mb_array() -> int:
    a = np.ones(1 << 24, np.float32)  # allocated, touched, freed: a worker's feature map
    del a
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    a = np.ones(1 << 24, np.float32)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    del a
    return faults


def test_freed_memory_is_reused_inside_and_given_back_after():
    outside = _faults_of_a_fresh_64mb_array()
    # each page of a fresh mapping faults in: 16,384 of 4 KiB, or 32 where NumPy's huge-page
    # advice is taken (2 MiB pages)
    assert outside >= 16
    with keep_freed_memory() as kept:
        assert kept
        _faults_of_a_fresh_64mb_array()
        inside = _faults_of_a_fresh_64mb_array()
    assert inside < outside / 10
    assert _faults_of_a_fresh_64mb_array() > outside / 2  # glibc's thresholds are back


def test_the_commands_that_compute_in_process_use_it(tmp_path, monkeypatch):
    import cv2
    from click.testing import CliRunner

    import pixelmill.engines.local as local
    from pixelmill.cli import cli

    entered = []
    real = local.keep_freed_memory

    def spy():
        entered.append(True)
        return real()

    monkeypatch.setattr(local, "keep_freed_memory", spy)
    rng = np.random.default_rng(0)
    cv2.imwrite(str(tmp_path / "a.png"), rng.integers(0, 256, (48, 40, 3), np.uint8))
    r = CliRunner().invoke(cli, ["upscale", str(tmp_path / "a.png"), str(tmp_path / "b.png"),
                                  "--scale", "2", "--model", "espcn"])
    assert r.exit_code == 0, r.output
    assert entered == [True]
    r = CliRunner().invoke(cli, ["sr", "eval", str(tmp_path), "--scale", "2",
                                  "--model", "espcn"])
    assert r.exit_code == 0, r.output
    assert entered == [True, True]
    frame = rng.integers(0, 256, (24, 24), np.uint8)
    for k, (dy, dx) in enumerate([(0, 0), (1, 0), (0, 1)]):
        cv2.imwrite(str(tmp_path / f"f{k}.png"), np.roll(frame, (dy, dx), (0, 1)))
    r = CliRunner().invoke(cli, ["sr", "fuse", *(str(tmp_path / f"f{k}.png") for k in range(3)),
                                  str(tmp_path / "fused.png"), "--prior", "none",
                                  "--iterations", "1"])
    assert r.exit_code == 0, r.output
    assert entered == [True, True, True]


def test_nested_uses_keep_it_until_the_outermost_ends():
    with keep_freed_memory() as outer:
        with keep_freed_memory() as inner:
            assert outer and inner
        _faults_of_a_fresh_64mb_array()
        assert _faults_of_a_fresh_64mb_array() < 4  # still kept after the inner one ended
    assert _faults_of_a_fresh_64mb_array() >= 16
