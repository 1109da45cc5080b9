"""The Python API called many times in one long-lived process (a notebook, a service): what a
call changes in the process (backend, RNG, environment, signal handlers) is put back, and what it
opens (file descriptors, clusters) is released.

Each test failed before its fix; see the docstrings for what was left behind.
"""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import textwrap
import weakref

import cv2
import numpy as np
import pytest


def _write_images(folder, n=3, side=48):
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        cv2.imwrite(str(folder / f"im{i}.png"), rng.integers(0, 255, (side, side + 8, 3),
                                                              dtype=np.uint8))
    return folder


def test_a_run_with_its_report_keeps_the_callers_matplotlib_backend(tmp_path):
    """`pixelmill.run(...)` (report=True, the default) called ``matplotlib.use("Agg",
    force=True)``: a notebook's inline (or any other) backend was switched for good after
    the first job. The report now draws on figures of its own canvas, without pyplot."""
    images = _write_images(tmp_path / "in")
    code = textwrap.dedent(f"""
        import matplotlib
        matplotlib.use("svg")
        import matplotlib.pyplot as plt
        plt.figure()
        import pixelmill
        from pixelmill.engines import InlineEngine
        pipe = {{"steps": [{{"op": "resize", "long_side": 16}}, {{"op": "sharpness"}}]}}
        s = pixelmill.run(pipe, {str(images)!r}, {str(tmp_path / "out")!r},
                          engine=InlineEngine(), progress=False)
        assert s.ok == 3 and s.report, s
        print(matplotlib.get_backend(), plt.get_fignums())
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[-2] == "svg [1]"


def test_train_cnn_leaves_the_callers_torch_rng_as_it_was():
    """``train_cnn`` (``learn.train(..., "cnn")``) reseeded torch's global RNG with its config's
    seed and left it so: a caller's own random stream was reset by every training. It is
    seeded for the call only now, and training stays reproducible."""
    torch = pytest.importorskip("torch")
    from pixelmill.learn.cnn import CNNConfig, train_cnn

    rng = np.random.default_rng(1)
    images = [rng.integers(0, 255, (32, 32, 3), np.uint8) for _ in range(6)]
    labels = ["a", "b"] * 3
    config = CNNConfig(epochs=1, channels=(4, 8), batch_size=4)
    torch.manual_seed(1234)
    before = torch.get_rng_state().clone()
    first = train_cnn(images, labels, images, labels, config, threads=1)
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(99)  # another caller state: the same network all the same
    second = train_cnn(images, labels, images, labels, config, threads=1)
    for a, b in zip(first.net.state_dict().values(), second.net.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)


def test_sr_train_leaves_the_callers_torch_rng_as_it_was(tmp_path, astronaut):
    """``pixelmill.sr.train`` seeded torch's global RNG for the network's initial weights and
    left it so."""
    torch = pytest.importorskip("torch")
    from pixelmill.codecs import encode
    from pixelmill.sr.training import TrainConfig, train

    data = tmp_path / "data"
    data.mkdir()
    for k, name in enumerate(["t0.png", "t1.png", "v7.png"]):
        (data / name).write_bytes(encode(astronaut[k * 60: k * 60 + 56, 100:164], "png"))
    torch.manual_seed(4321)
    before = torch.get_rng_state().clone()
    train(TrainConfig(arch="espcn", scale=2, data=str(data), out=str(tmp_path / "run"),
                      epochs=1, iters_per_epoch=1, batch=2, patch=8, val_side=0),
          progress=False, log=lambda line: None)
    assert torch.equal(torch.get_rng_state(), before)


def _deleted_fds(marker: str) -> list[str]:
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if marker in target and target.endswith("(deleted)"):
            out.append(target)
    return out


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_region_handles_of_removed_files_are_released(tmp_path):
    """Region reads keep up to four open handles per process; a tiled job's spill (a decoded
    PNG, removed when the job ends) stayed open behind them, its disk space held until three
    more jobs had run. A handle of a removed file is now closed at the next open, and
    ``regions.release(uri)`` closes a source's handles at once."""
    from pixelmill import regions

    sources = []
    for i in range(3):
        path = tmp_path / f"spill{i}.npy"
        np.save(path, np.full((16, 16), i, np.uint8))
        source = regions.open_source(str(path), None)
        assert regions.read_region(source, (0, 4, 0, 4))[0, 0] == i
        sources.append(source)
        path.unlink()  # as a tiled job drops its spill
    assert len(_deleted_fds("spill")) <= 1  # four were kept open before
    regions.release(sources[-1].uri)
    assert _deleted_fds("spill") == []


@pytest.mark.dask
def test_dask_engine_puts_the_environment_back_and_frees_its_scheduler():
    """Every ``engine="dask"`` job without an address left (1) the nannies' pre-spawn variables
    in this process's environment for good (``OMP_NUM_THREADS=1``, ``MKL_NUM_THREADS=1``,
    ``OPENBLAS_NUM_THREADS=1``, glibc's malloc settings, ``PYTHONHASHSEED``): every process the
    caller started afterwards ran single-threaded BLAS; and (2) its closed scheduler alive, held
    by an unbounded cache in ``distributed.core``, with a log handler each (one more per job)."""
    pytest.importorskip("distributed")
    from distributed import Scheduler

    from pixelmill.engines.dask import DaskEngine

    keys = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
            "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "OPENCV_FOR_THREADS_NUM",
            "PYTHONHASHSEED")
    before = {k: os.environ.get(k) for k in keys}
    with DaskEngine(workers=1) as engine:
        assert sorted(r for _, r in engine.map(abs, [-1, -2])) == [1, 2]
        assert {k: os.environ.get(k) for k in keys} == before  # also while it runs
        scheduler = weakref.ref(next(o for o in gc.get_objects() if type(o) is Scheduler
                                     and o.address == engine.client.scheduler.address))
    assert {k: os.environ.get(k) for k in keys} == before
    gc.collect()
    assert scheduler() is None


@pytest.mark.dask
def test_dask_engine_uses_the_processs_default_client_and_leaves_it_open(tmp_path):
    """A process with a default ``distributed.Client`` (a notebook's) got a second cluster
    started, and stopped, for every ``run(engine="dask")``; the job now runs on that client's
    cluster, which stays up."""
    pytest.importorskip("distributed")
    from distributed import Client, LocalCluster

    import pixelmill
    from pixelmill.engines.dask import DaskEngine

    images = _write_images(tmp_path / "in")
    # in-process (inproc:// comms; its HTTP server on a free loopback port, never 8787):
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as client:
        with DaskEngine() as engine:
            assert engine.client is client and engine.workers == 1
        assert client.status == "running"
        summary = pixelmill.run({"steps": [{"op": "resize", "long_side": 16}]}, str(images),
                                str(tmp_path / "out"), engine="dask", progress=False,
                                report=False)
        assert summary.ok == 3 and client.status == "running"
        assert client.submit(abs, -3).result() == 3


@pytest.mark.spark
def test_spark_engine_puts_back_sigint_and_the_environment_it_changed():
    """pyspark's SparkContext installs a SIGINT handler (cancelling its jobs) that outlived the
    engine's session: every later Ctrl-C of the process went to a stopped context. The
    variables set for the session (``PYSPARK_PYTHON``, pyspark's socket settings) stayed too."""
    pytest.importorskip("pyspark")
    from pyspark.sql import SparkSession

    from pixelmill.engines.spark import SparkEngine

    if SparkSession.getActiveSession() is not None:
        pytest.skip("an active SparkSession is used as is (nothing of ours to put back)")
    keys = ("PYSPARK_PYTHON", "SPARK_AUTH_SOCKET_TIMEOUT", "SPARK_BUFFER_SIZE")
    before = {k: os.environ.get(k) for k in keys}
    handler = signal.getsignal(signal.SIGINT)
    with SparkEngine("local[1]") as engine:
        assert sorted(r for _, r in engine.map(abs, [-1, -2])) == [1, 2]
    assert signal.getsignal(signal.SIGINT) is handler
    assert {k: os.environ.get(k) for k in keys} == before


def test_run_tiled_in_process_keeps_the_callers_opencv_threads(tmp_path):
    """run_tiled on the in-process (inline) engine, as run() uses for memory:// jobs, set
    cv2.setNumThreads / BLAS limits of the caller's process for good."""
    import pixelmill
    from pixelmill.engines import InlineEngine

    src = tmp_path / "in.tif"
    cv2.imwrite(str(src), np.random.default_rng(0).integers(0, 255, (300, 280, 3), np.uint8))
    before = cv2.getNumThreads()
    cv2.setNumThreads(7)
    try:
        s = pixelmill.run_tiled({"steps": [{"op": "gaussian", "sigma": 2}]}, str(src),
                                str(tmp_path / "out.tif"), tile=128, engine=InlineEngine(),
                                progress=False)
        assert s.status == "ok" and cv2.getNumThreads() == 7
    finally:
        cv2.setNumThreads(before)


def test_run_tiled_releases_its_spill(tmp_path):
    """A PNG input is spilled to .npy; the driver kept the removed spill open."""
    import pixelmill
    from pixelmill.engines import InlineEngine

    src = tmp_path / "in.png"
    cv2.imwrite(str(src), np.random.default_rng(0).integers(0, 255, (300, 280, 3), np.uint8))
    for i in range(2):
        pixelmill.run_tiled({"steps": [{"op": "gaussian", "sigma": 2}]}, str(src),
                            str(tmp_path / f"out{i}.tif"), tile=128, engine=InlineEngine(),
                            progress=False)
    held = [os.readlink(f"/proc/self/fd/{f}") for f in os.listdir("/proc/self/fd")
            if os.path.exists(f"/proc/self/fd/{f}")]
    assert not [t for t in held if "pixelmill-spill" in t]


def test_run_tiled_on_a_memory_store_runs_in_this_process(tmp_path):
    """A memory:// store exists only in this process: on the default (process) engine every
    tile failed, as the workers saw an empty store; the tiles now run here, as run() runs such
    jobs, and a Dask or Spark engine is refused before any work."""
    import fsspec

    import pixelmill
    from pixelmill.errors import UsageError

    fs = fsspec.filesystem("memory")
    _, buf = cv2.imencode(".png", np.random.default_rng(5).integers(0, 255, (300, 280, 3),
                                                                      np.uint8))
    fs.pipe("/tiledmem/in.png", buf.tobytes())
    pipeline = {"steps": [{"op": "gaussian", "sigma": 2}]}
    try:
        s = pixelmill.run_tiled(pipeline, "memory://tiledmem/in.png",
                                "memory://tiledmem/out.tif", tile=128, progress=False)
        assert s.status == "ok" and s.failed == 0 and fs.exists("/tiledmem/out.tif")
        whole = pixelmill.read_image("memory://tiledmem/out.tif")
        assert whole.shape == (300, 280, 3)
        with pytest.raises(UsageError, match="memory:// store"):
            pixelmill.run_tiled(pipeline, "memory://tiledmem/in.png",
                                "memory://tiledmem/out2.tif", tile=128, progress=False,
                                engine="dask")
    finally:
        fs.rm("/tiledmem", recursive=True)
