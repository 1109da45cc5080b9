"""The benchmark scripts run end to end and print their figures (at their smallest sizes).

Nothing here measures speed (DESIGN.md: speed is measured by the scripts, never asserted in
tests). What is checked is that a library change has not broken a script the README tells users
to run: each script in benchmarks/ runs as a subprocess, exits 0 and prints its table and
ratios (a few labels and figures of each are matched), and every service it starts (Dask's
scheduler, workers and nannies, Spark's driver, Python's pools) listens on loopback only —
sampled from the whole process tree while it runs.

A script the README shows in a ``bash`` block runs as the README writes it (its first such
line), with small sizes appended: argparse keeps the last value of a repeated flag, so the
README's flags must still exist while the sizes shrink. The README's other lines for that
script must use flags the script still has. ``bench_learn.py`` appears in the README only in
prose and a transcript; it runs with its own small flags. ``bench_engines.py`` starts Spark
(two JVMs' worth of start-up at any size) and is ``slow``.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shlex
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from tests._readme import README, bash_blocks, parse_commands

BENCHMARKS = README.parent / "benchmarks"


@dataclass(frozen=True)
class Bench:
    script: str
    small: str  #: flags appended to the README's line: the smallest sizes ("{tmp}": a folder)
    expect: tuple[str, ...]  #: regular expressions the output must match (multi-line)
    marks: tuple = ()
    services: bool = False  #: starts servers (the socket watch must see them listen)


BENCHES = [
    Bench("bench_scan.py", "--n 8 --size 64x48 --rounds 1 --workers 2 --dir {tmp}",
          (r"^8 JPEGs of 64x48", r"^decode rates per CPU-second: .*\d/s",
           r"^scan header-only: [\d,]+ files/s end to end .* target >= 3,000 -> (NOT )?MET$",
           r"^pure decode baseline \(\w+, .*\): [\d,]+ files/s with pool start, [\d,]+ warm$",
           r"^scan --verify: .* = \d+% of the baseline .* target >= 85% -> (NOT )?MET$",
           r"^header-only scan is [\d.]+x the pure decode rate; invalid rows: 0 / 0$")),
    Bench("bench_thumbnail.py", "--n 4 --repeat 1 --loop-n 2 --dir {tmp}",
          (r"^thumbnail benchmark: 4 photos 1920x1080",
           r"^method\s+wall img/s\s+x loop\s+img/CPU-s\s+idle img/s\s+x loop\s+peak RSS MB$",
           *(rf"^{m}\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+\d+$"
             for m in ("pillow-loop", "pillow-pool", "pillow-draft-pool", "opencv-pool",
                       r"opencv-pool\+malloc", "pixelmill")),
           r"^pixelmill / Pillow loop: [\d.]+x wall, [\d.]+x on idle cores \(bar >= 7\)$",
           r"^pixelmill / fastest hand-written: [\d.]+x wall",
           r"^ceiling for any composition .* = [\d.]+x the Pillow loop",
           r"^pixelmill per-worker peak RSS: \d+ MB \(bar < 300\)$")),
    Bench("bench_tiled.py", "--size 512 --ref 256 --workers 2 --dir {tmp}",
          (r"^input: 512×512 RGB tiled BigTIFF", r"^in-memory 256×256: [\d.]+ s, [\d.]+ MP/s$",
           r"^tiled 512×512: [\d.]+ s, [\d.]+ MP/s, \d+ tiles of \d+ px on \d+ workers, "
           r"peak RSS [\d.]+ GB",
           r"^  ratio tiled / in-memory throughput: [\d.]+ \(target >= 0.80\)$",
           r"^  peak RSS [\d.]+ GB \(target < 1.5 GB\): (ok|over)$",
           r"^dask-image \+ map_overlap: [\d.]+ s, [\d.]+ MP/s, peak RSS [\d.]+ GB$",
           r"^  speed-up tiled / dask-image: [\d.]+× \(target > 1\)$")),
    Bench("bench_sr.py", "--size 96 --frame 64 --repeat 1",
          (r"^1\. throughput at x2 on a 64×64 RGB image:$",
           *(rf"^  {m}\s+[\d.]+ output MP/s$"
             for m in (r"bicubic \(MATLAB\)", "edsr", "espcn", "fsrcnn")),
           r"^  edsr 64×64: whole [\d.]+ s, 64px tiles [\d.]+ s -> tiles run at \d+ % of "
           r"whole-image speed per pixel \(target >= 70 %\)$",
           r"^  96×96 RGB -> 192×192 with espcn: ok \d+ 192 192, \d+ s, .* peak RSS "
           r"\(process tree\) [\d.]+ GiB \(target < 2 GiB; the driver's own peak [\d.]+ "
           r"GiB\)$")),
    Bench("bench_engines.py", "--n 4 --baseline-n 2 --units 10 --dir {tmp}",
          (*(rf"^  {m}: [\d.]+ images/s$" for m in ("local", "dask", "spark",
                                                    r"spark image source \+ pandas UDF",
                                                    r"spark binaryFile \+ Pillow UDF")),
           r"^method\s+images/s\s+x local$", r"^spark\s+[\d.]+\s+[\d.]+$",
           r"^engine\s+ms/unit \(batched\)\s+ms/task \(1 unit\)$",
           r"^pixelmill on Spark / image source \+ pandas UDF: [\d.]+x \(bar >= 10\)$",
           r"^pixelmill on Spark / binaryFile \+ Pillow UDF: [\d.]+x \(bar >= 3\)$",
           r"^dask / local: [\d.]+ \(bar >= 0.85\)$", r"^spark / local: [\d.]+ \(bar >= 0.85\)$"),
          (pytest.mark.slow, pytest.mark.dask, pytest.mark.spark), services=True),
    Bench("bench_pipelines.py", "--n 4 --n-small 8 --repeat 1 --dir {tmp}",
          (r"^pipelines benchmark: 2 workers; 1 interleaved rounds",
           r"^job\s+images\s+pixelmill img/s\s+hand-written img/s\s+ratio$",
           *(rf"^{j}\s+\d+\s+[\d.]+\s+[\d.]+\s+[\d.]+$"
             for j in ("unsharp", "resize-png", "gray-otsu", "clahe", "rotate-flip", "measure")))),
    Bench("bench_ops.py", "--size 96x64 --repeat 1 --budget 0.2",
          (r"^ops benchmark: 96x64 RGB photo mosaic",
           r"^op\s+setting\s+dtype\s+pixelmill ms\s+ref ms\s+ratio\s+wall ratio\s+reference$",
           *(rf"^{m}\s+.*\s+uint8\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+\S"
             for m in ("resize", "gaussian", "median", "bilateral", "canny", "tophat",
                       "threshold", "watershed", "slic", "phash", "hog")),
           r"^ratio > 1\.5 \(CPU and wall\): \d+ case\(s\)")),
    Bench("bench_learn.py", "--n 2 --size 160x120 --epochs 1 --per-class 2 --vectors 500 "
          "--dim 16 --queries 10",
          (r"^== feature extraction: 2 JPEGs 160×120, 2 workers ==$",
           *(rf"^{m}\s+\d+\s+[\d.]*\s+[\d.]+\s+[\d.]+\s+[\d.]+$"
             for m in ("baseline: decode, 1/8, moments", "color_histogram", "hog size=128x128",
                       "lbp_histogram", "glcm", "gradient_stats", "cnn_embedding",
                       "color_histogram grid 4x4 max")),
           r"^== CNN training on CPU: 40 images 32×32 RGB, 20 classes, 1 epochs ==$",
           # one line per thread count, labelled with it (it printed torch's count after the
           # call: "2 thread(s)" twice, since train_cnn(threads=) restores the process's)
           r"^1 thread\(s\): training\s+[\d.]+ images/s .* ratio [\d.]+$",
           r"^2 thread\(s\): training\s+[\d.]+ images/s .* ratio [\d.]+$",
           r"^== index: 500 vectors × 16 \(cosine\), 10 single queries, k=10 ==$",
           r"^exact \(NumPy\)\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+1\.000\s+1\.0$",
           r"^hnswlib M=16 ef=64\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+[\d.]+$")),
]


def readme_bench_lines() -> dict[str, list[list[str]]]:
    """script name -> the README's bash lines running it (arguments after the script)."""
    lines: dict[str, list[list[str]]] = {}
    for block in bash_blocks():
        for command in parse_commands(block):
            argv = command.argv()
            if command.heredoc is None and len(argv) > 1 and \
                    argv[1].startswith("benchmarks/bench_"):
                lines.setdefault(Path(argv[1]).name, []).append(argv[2:])
    return lines


def script_flags(script: str) -> set[str]:
    source = (BENCHMARKS / script).read_text(encoding="utf-8")
    return set(re.findall(r"add_argument\(\s*\"(--[\w-]+)\"", source))


def listening(root: psutil.Process) -> set[str]:
    """``ip:port`` of every TCP socket listening (and UDP socket bound) in ``root``'s tree."""
    found = set()
    try:
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return found
    for proc in procs:
        try:
            conns = proc.net_connections(kind="inet")
        except psutil.Error:
            continue
        for c in conns:
            if c.laddr and (c.status == psutil.CONN_LISTEN or c.type == 2):  # 2: SOCK_DGRAM
                found.add(f"{c.laddr.ip}:{c.laddr.port}")
    return found


def is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address.rsplit(":", 1)[0].strip("[]"))
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or bool(mapped and mapped.is_loopback)


def test_every_readme_benchmark_line_is_run_with_flags_its_script_has():
    lines = readme_bench_lines()
    assert lines, "README.md shows no benchmark command in a bash block"
    ours = {b.script for b in BENCHES}
    on_disk = {p.name for p in BENCHMARKS.glob("bench_*.py")}
    assert ours == on_disk, f"benchmarks/ has {sorted(on_disk)}; this module runs {sorted(ours)}"
    for script, variants in lines.items():
        assert script in ours, f"README.md runs benchmarks/{script}, which no test runs"
        for args in variants:
            unknown = {a for a in args if a.startswith("--")} - script_flags(script)
            assert not unknown, f"README.md: benchmarks/{script} has no flag {sorted(unknown)}"


@pytest.mark.parametrize("bench", [pytest.param(b, id=b.script.removesuffix(".py"),
                                                marks=b.marks) for b in BENCHES])
def test_benchmark_runs_and_prints_its_figures(bench: Bench, tmp_path):
    readme = readme_bench_lines().get(bench.script, [[]])[0]
    args = [*readme, *shlex.split(bench.small.format(tmp=tmp_path / "data"))]
    assert {a for a in args if a.startswith("--")} <= script_flags(bench.script), args
    env = {k: v for k, v in os.environ.items() if k != "SPARK_LOCAL_IP"}  # the script's own
    proc = subprocess.Popen([sys.executable, str(BENCHMARKS / bench.script), *args],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    bound: set[str] = set()
    done = threading.Event()

    def watch() -> None:  # every listening socket of the tree, while it runs
        root = psutil.Process(proc.pid)
        while not done.is_set():
            bound.update(listening(root))
            time.sleep(0.25)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        output, _ = proc.communicate(timeout=540)
    finally:
        done.set()
        watcher.join()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    shown = f"$ {bench.script} {shlex.join(args)}\n{output[-6000:]}"
    assert proc.returncode == 0, shown
    for pattern in bench.expect:
        assert re.search(pattern, output, re.M), f"no line matches {pattern!r}\n{shown}"
    assert all(is_loopback(a) for a in bound), f"listening beyond loopback: {sorted(bound)}"
    assert bool(bound) == bench.services, f"listening sockets seen: {sorted(bound)}"


def test_loopback_addresses_are_told_from_others():
    assert all(map(is_loopback, ["127.0.0.1:8786", "::1:7077", "::ffff:127.0.0.1:4040"]))
    assert not any(map(is_loopback, ["0.0.0.0:8786", ":::7077", "10.0.0.5:7077"]))
