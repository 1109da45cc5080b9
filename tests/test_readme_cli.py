"""The README's shell commands run as written, and do what the README says they do.

Every fenced ``bash`` block of README.md is read when the test runs (so an edit of the README is
checked) and each of its ``pixelmill ...`` lines is run for real, in order, through the console
script's own entry point (:func:`pixelmill.cli.main`, in this process: the exit code is the one
the shell would see), in a fresh temporary folder ``work/`` after a prelude that makes the
inputs the lines name, small: ``photos/`` (real photographs, JPEG and PNG, in label folders and
one beside them), the pipeline files the README defines (``thumb.yaml``, ``sharpen.yaml``;
``upscale.yaml`` is the README's ``op: super_resolve`` YAML block), ``slide.tif``,
``scene.ome.zarr`` (two levels), ``photo.png``, ``photo.jpg``, ``scan.tif``, a ``Set5/`` of five
ground-truth PNGs, frames ``f0..f3.png`` of one scene at known half-pixel shifts,
``../shared/data/sr-train`` (a few PNGs, one in the held-out split), ``digits/`` and
``new_images/``. A here-document (``cat > features.yaml <<'YAML'``) is written as the shell
would. A line's trailing ``# comment`` is dropped, ``\\`` continuations are joined, and
``[--json]`` (optional in the README) is run both without and with the flag. Each line's outcome
is checked, not only its exit code: the files it names exist and hold the right thing (tiled ==
whole image, pyramid levels, Zarr readable, ×S sizes, JSON that parses), ``--resume`` does no
work twice, a cluster line ran on its cluster (and the first ``upscale`` line, run again, must
refuse its existing OUTPUT: exit 2). The commands run with one thread per OpenMP/BLAS/torch pool
in this process, as tests/learn do (two busy cores). Each block is identified by a text it holds
(``RUNNERS``); a block no runner claims fails :func:`test_every_bash_block_is_run` (blocks
holding only ``benchmarks/bench_*.py`` lines are tests/test_benchmarks.py's), and a line a
runner does not take in order, or leaves over, fails its block's test.

Substitutions, only where a line cannot run here as written (each must match its line, or the
test fails naming it):

- block "scan": ``endpoint_url=http://127.0.0.1:9000`` -> the port of a loopback moto S3 server
  holding ``s3://bucket/photos``; ``AWS_ENDPOINT_URL`` points at a closed loopback port, so the
  line reaches the bucket only through the ``--storage-option`` it passes.
- block "engines": ``tcp://10.0.0.5:8786`` -> a Dask scheduler with two worker processes on
  127.0.0.1 (:func:`tests._clusters.dask_cluster`); ``s3://photos/`` and ``s3://thumbs/`` are
  buckets of a loopback moto server that the environment routes ``s3://`` to
  (``AWS_ENDPOINT_URL``, set before the cluster starts so its workers inherit it);
  ``spark://10.0.0.5:7077`` -> a Spark standalone master and worker on 127.0.0.1 (the
  session-wide ``spark_master`` of tests/conftest.py, which tests/engines use too);
  ``hdfs:///photos/`` and ``hdfs:///thumbs/`` -> absolute local paths (there is no HDFS here).
- block "sr": ``--device cuda`` -> when torch sees no GPU, the line as written must fail
  before any work (exit 2, naming ``--device``, as the README says), and then runs with
  ``--device cpu``; ``--minutes 50`` -> ``--minutes 0.2 --epochs 1 --iters 2 --batch 4
  --patch 16`` (seconds, not 50 minutes). ``sr export`` runs as written, but the package's
  ``sr/weights`` folder it ships to and the default training folder it evaluates on are
  pointed at ``package-weights/`` and ``../shared/data/sr-train`` of the temporary folder
  (``pixelmill.sr.weights.WEIGHTS_DIR``, ``pixelmill.sr.data.default_data_dir``): the test must
  not replace the shipped weights.

Not run: ``make demo ENGINE=dask`` and ``make demo ENGINE=spark`` (``make`` installs the
project into ``.venv`` first; the demo itself is tests/jobs/test_demo.py). What is checked of
them here: ``make -n`` shows the target passing ``ENGINE`` to ``python -m pixelmill.demo
--engine``, and the demo accepts that engine name.
"""

from __future__ import annotations

import contextlib
import json
import re
import shlex
import shutil
import subprocess
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests._readme import (
    README,
    Block,
    Command,
    Runner,
    bash_blocks,
    block_holding,
    count_maps,
    fenced_blocks,
    make_photos,
    parse_commands,
    photo,
    write_readme_files,
    write_tiff,
)

REPO = README.parent

# ---------------------------------------------------------------------------------------------
# Running a block's commands


@dataclass
class Outcome:
    code: int
    out: str
    err: str


class Script:
    """A README block's commands, taken in order by a runner, run through the CLI's main."""

    def __init__(self, block: Block, capsys) -> None:
        self.block, self.capsys = block, capsys
        self.commands = parse_commands(block)
        self.position = 0

    def next(self, start: str) -> Command:
        """The next command of the block, which must start with ``start``."""
        where = f"README.md bash block at line {self.block.line}"
        assert self.position < len(self.commands), f"{where}: no command left for `{start}`"
        command = self.commands[self.position]
        assert command.text.startswith(start), (
            f"{where}: line {command.line} is `{command.text}`; the test expected a command "
            f"starting `{start}` (update tests/test_readme_cli.py with the README)")
        self.position += 1
        return command

    def run(self, command: Command, *, optional: bool = False, expect: int = 0) -> Outcome:
        from pixelmill.cli import main

        if command.heredoc is not None:
            name, body = command.heredoc
            Path(name).write_text(body, encoding="utf-8")
            return Outcome(0, "", "")
        argv = command.argv(optional)
        assert argv[0] == "pixelmill", f"README.md line {command.line}: not a pixelmill command"
        self.capsys.readouterr()
        if "--memory" in argv:  # the budget counts the calling process's own resident memory:
            # in this test process that is the whole suite's so far, so run it as a user would
            proc = subprocess.run([sys.executable, "-m", "pixelmill", *argv[1:]],
                                  capture_output=True, text=True, timeout=300)
            code, out, err = proc.returncode, proc.stdout, proc.stderr
        else:
            code = main(argv[1:])
            out, err = self.capsys.readouterr()
        assert code == expect, (f"README.md line {command.line}: `{shlex.join(argv)}` exited "
                                f"{code}, expected {expect}\n--- stdout\n{out}--- stderr\n{err}")
        return Outcome(code, out, err)

    def finish(self) -> None:
        rest = [f"line {c.line}: {c.text}" for c in self.commands[self.position:]]
        assert not rest, ("README.md lines no test runs (add them to tests/test_readme_cli.py):\n"
                          + "\n".join(rest))


# ---------------------------------------------------------------------------------------------
# Test data

#: PNGs added to test_readme's JPEG photos (``photos/**/*.png`` must find something)
PNGS = {"dogs/rocket.png": ("rocket", (120, 80)), "dogs/astronaut.png": ("astronaut", (96, 96))}


def make_cli_photos(root: str = "photos") -> dict[str, bytes]:
    """:data:`tests._readme.PHOTOS` as JPEGs and :data:`PNGS`; relative path -> bytes."""
    from pixelmill import codecs

    files = make_photos(root)
    for rel, (sample, size) in PNGS.items():
        path = Path(root, rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(codecs.encode(photo(sample, size), "png"))
        files[rel] = path.read_bytes()
    return files


def labels_of(rels) -> dict[str | None, int]:
    counts: dict[str | None, int] = {}
    for rel in rels:
        label = rel.rsplit("/", 1)[0] if "/" in rel else None
        counts[label] = counts.get(label, 0) + 1
    return counts


def write_png(path: str | Path, image: np.ndarray) -> None:
    from pixelmill import codecs

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(codecs.encode(image, "png"))


def write_ome_zarr(path: str, image: np.ndarray) -> list[np.ndarray]:
    """A two-level OME-Zarr (C×Y×X, level 1 = area half size), written with zarr itself."""
    import cv2
    import zarr

    half = cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2),
                      interpolation=cv2.INTER_AREA)
    group = zarr.open_group(path, mode="w")
    for i, level in enumerate((image, half)):
        group.create_array(str(i), data=np.ascontiguousarray(level.transpose(2, 0, 1)),
                           chunks=(3, 64, 64))
    axes = [{"name": "c", "type": "channel"}, {"name": "y", "type": "space"},
            {"name": "x", "type": "space"}]
    group.attrs["ome"] = {"version": "0.5", "multiscales": [{"axes": axes, "datasets": [
        {"path": str(i), "coordinateTransformations": [{"type": "scale",
                                                        "scale": [1, 2 ** i, 2 ** i]}]}
        for i in range(2)]}]}
    return [image, half]


def readme_yaml_block(marker: str) -> str:
    """The README's one ``yaml`` block that holds ``marker``."""
    found = [b.code for b in fenced_blocks(README.read_text(encoding="utf-8"), "yaml")
             if marker in b.code]
    assert len(found) == 1, f"README.md has {len(found)} yaml blocks holding {marker!r}"
    return found[0]


def make_sr_train(root: Path) -> list[str]:
    """A few photographs as a training folder, at least one of them in the held-out split
    (README: "CRC-32 of the relative path, 10 %") and four in training."""
    samples = ["astronaut", "coffee", "chelsea", "rocket", "camera", "cat"]
    names, held_out, i = [], 0, 0
    while held_out < 1 or len(names) - held_out < 4:
        name = f"img{i:03d}.png"
        if zlib.crc32(name.encode()) % 100 < 10 or len(names) - held_out < 4:
            held_out += zlib.crc32(name.encode()) % 100 < 10
            write_png(root / name, photo(samples[len(names) % len(samples)], (64, 64)))
            names.append(name)
        i += 1
    return names


def read_tiff(path: str, level: int = 0) -> np.ndarray:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        return tif.series[0].levels[level].asarray()


def mtimes(paths) -> dict[str, int]:
    return {str(p): Path(p).stat().st_mtime_ns for p in paths}


@contextlib.contextmanager
def moto_s3(monkeypatch, buckets: list[str], *, route_environment: bool):
    """A loopback moto S3 server with ``buckets``; yields (endpoint, s3fs filesystem).

    ``route_environment``: ``AWS_ENDPOINT_URL`` names the server, so plain ``s3://`` URLs
    reach it; otherwise it names a closed loopback port (an ``s3://`` access that does not
    pass the endpoint itself fails here, and never leaves the machine)."""
    pytest.importorskip("s3fs")
    import s3fs

    from tests._clusters import free_port
    from tests._s3server import s3_server

    with s3_server(buckets=buckets) as options:
        endpoint = options["client_kwargs"]["endpoint_url"]
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint if route_environment
                           else f"http://127.0.0.1:{free_port()}")
        s3fs.S3FileSystem.clear_instance_cache()  # cached clients know an earlier endpoint
        try:
            yield endpoint, s3fs.S3FileSystem(skip_instance_cache=True, **options)
        finally:
            s3fs.S3FileSystem.clear_instance_cache()


# ---------------------------------------------------------------------------------------------
# One runner per README bash block: prelude, the block's commands in order, checks


def run_scan_block(script: Script, request) -> None:
    """pixelmill scan: a labelled folder, an S3 prefix with --verify --sha256 --out, a glob."""
    import hashlib

    import pyarrow.parquet as pq

    monkeypatch = request.getfixturevalue("monkeypatch")
    files = make_cli_photos()
    n = len(files)

    result = script.run(script.next("pixelmill scan photos/ --recursive --label-from parent"))
    assert re.search(rf"^{n} files \(.*\): {n} valid, 0 invalid$", result.out, re.M), result.out
    section = result.out.split("by label:")[1].split("\n\n")[0]
    printed = {m[0]: int(m[1]) for m in re.findall(r"^\s+(\S+)\s+(\d+)$", section, re.M)}
    assert printed == {k or "(none)": v for k, v in labels_of(files).items()}, result.out

    command = script.next("pixelmill scan s3://bucket/photos -r --verify --sha256 --out ")
    with moto_s3(monkeypatch, ["bucket"], route_environment=False) as (endpoint, fs):
        for rel, payload in files.items():
            fs.pipe(f"bucket/photos/{rel}", payload)
        script.run(command.sub("endpoint_url=http://127.0.0.1:9000", f"endpoint_url={endpoint}"))
    rows = pq.read_table("inventory.parquet").to_pylist()
    assert sorted(r["uri"] for r in rows) == sorted(f"s3://bucket/photos/{rel}" for rel in files)
    for row in rows:
        rel = row["uri"].removeprefix("s3://bucket/photos/")
        assert row["valid"] and row["sha256"] == hashlib.sha256(files[rel]).hexdigest(), row

    result = script.run(script.next("pixelmill scan 'photos/**/*.png' --json"))
    summary = json.loads(result.out)
    assert (summary["files"], summary["valid"], summary["by_format"]) == (
        len(PNGS), len(PNGS), {"png": len(PNGS)}), summary


def run_batch_block(script: Script, request) -> None:
    """pixelmill run, run --resume (nothing done twice), report."""
    from pixelmill import codecs
    from pixelmill.manifest import read_manifest

    files = make_cli_photos()
    write_readme_files("thumb.yaml")
    n = len(files)

    result = script.run(script.next("pixelmill run thumb.yaml photos/ thumbs/ --workers 2"))
    assert f"{n} inputs: {n} ok, 0 invalid, 0 failed" in result.out, result.out
    thumbs = sorted(Path("thumbs").rglob("*.jpg"))
    assert sorted(p.relative_to("thumbs").with_suffix("").as_posix() for p in thumbs) == sorted(
        rel.rsplit(".", 1)[0] for rel in files)  # every input, JPEG out (--format jpg)
    for path in thumbs:
        info = codecs.probe(path.read_bytes())
        assert info.format == "jpg" and max(info.width, info.height) == 512, (path, info)
    rows = read_manifest("thumbs/manifest.parquet")
    assert len(rows) == n and {(r["status"], r["encoding"]) for r in rows} == {("ok", "jpg q=85")}
    before = mtimes(thumbs)

    command = script.next("pixelmill run thumb.yaml photos/ thumbs/")
    assert "--resume" in command.argv(), command
    result = script.run(command)
    assert "(0 processed" in result.out and f"{n} already done" in result.out, result.out
    assert mtimes(thumbs) == before  # no image written again

    script.run(script.next("pixelmill report thumbs/manifest.parquet --out report.html"))
    html = Path("report.html").read_text(encoding="utf-8")
    assert html.lstrip().lower().startswith("<!doctype html") and "cup" in html


def run_tile_block(script: Script, request) -> None:
    """pixelmill tile: BigTIFF, OME-Zarr, pyramid + zstd, --resume, --overwrite, Dask + SR."""
    import tifffile
    import yaml
    import zarr

    import pixelmill.sr as sr
    from pixelmill.engines.dask import DaskEngine
    from pixelmill.pipeline import load_pipeline

    on_dask = count_maps(request.getfixturevalue("monkeypatch"), DaskEngine)
    write_readme_files("sharpen.yaml")
    Path("upscale.yaml").write_text(readme_yaml_block("op: super_resolve"), encoding="utf-8")
    slide = photo("astronaut", (300, 260))
    write_tiff("slide.tif", slide)
    scene = write_ome_zarr("scene.ome.zarr", photo("coffee", (200, 160)))
    whole = load_pipeline("sharpen.yaml").run(slide).image

    script.run(script.next("pixelmill tile sharpen.yaml slide.tif sharpened.tif --memory 2GB"))
    with tifffile.TiffFile("sharpened.tif") as tif:  # "tiled BigTIFF out"
        assert tif.is_bigtiff and tif.pages[0].is_tiled
    assert np.array_equal(read_tiff("sharpened.tif"), whole)

    script.run(script.next("pixelmill tile sharpen.yaml slide.tif sharpened.zarr --tile 1024"))
    group = zarr.open_group("sharpened.zarr", mode="r")  # "OME-Zarr out"
    level0 = group.attrs["ome"]["multiscales"][0]["datasets"][0]["path"]
    assert np.array_equal(np.asarray(group[level0]).transpose(1, 2, 0), whole)

    script.run(script.next("pixelmill tile sharpen.yaml slide.tif pyramid.tif --pyramid "
                           "--compression zstd"))
    with tifffile.TiffFile("pyramid.tif") as tif:
        assert len(tif.series[0].levels) > 1
        assert tif.pages[0].compression == tifffile.COMPRESSION.ZSTD
        assert tif.series[0].levels[1].shape[:2] == (130, 150)
    assert np.array_equal(read_tiff("pyramid.tif"), whole)

    before = mtimes(["sharpened.tif"])
    result = script.run(script.next("pixelmill tile sharpen.yaml slide.tif sharpened.tif "
                                    "--resume"))
    assert "already complete" in result.out and "nothing to do" in result.out, result.out
    assert mtimes(["sharpened.tif"]) == before

    result = script.run(script.next("pixelmill tile sharpen.yaml slide.tif sharpened.tif "
                                    "--overwrite"))
    assert "(0 from an earlier run)" in result.out, result.out  # every tile again
    assert mtimes(["sharpened.tif"]) != before
    assert np.array_equal(read_tiff("sharpened.tif"), whole)

    script.run(script.next("pixelmill tile upscale.yaml scene.ome.zarr big.tif --level 1 "
                           "--engine dask"))
    assert on_dask["units"] >= 1  # the tiles ran as Dask tasks
    step = yaml.safe_load(Path("upscale.yaml").read_text())["steps"][0]
    big, half, s = read_tiff("big.tif"), scene[1], step["scale"]
    assert big.shape == (s * half.shape[0], s * half.shape[1], 3)  # --level 1, x scale
    reference = sr.upscale_image(half, sr.load_model(step["model"], s), s)
    assert np.abs(big.astype(int) - reference).max() <= 1  # tiled == whole, to rounding


def run_sr_block(script: Script, request) -> None:
    """upscale (in memory, streamed, --resume, --overwrite, a device), sr models / eval / fuse /
    train / export."""
    import torch

    import pixelmill.sr as sr
    import pixelmill.sr.data
    import pixelmill.sr.weights
    from pixelmill import codecs
    from pixelmill.images import read_image

    monkeypatch = request.getfixturevalue("monkeypatch")
    write_png("photo.png", photo("coffee", (64, 48)))
    Path("photo.jpg").write_bytes(codecs.encode(photo("chelsea", (56, 40)), "jpg", quality=90))
    write_tiff("scan.tif", photo("astronaut", (96, 80)))
    for name in ("astronaut", "coffee", "chelsea", "rocket", "camera"):
        write_png(f"Set5/{name}.png", photo(name, (48, 48)))
    big = photo("astronaut", (66, 66))
    shifts = [(0, 0), (1, 0), (0, 1), (1, 1)]  # HR pixels: half a pixel of the x2 frames
    for i, (dy, dx) in enumerate(shifts):
        write_png(f"f{i}.png", sr.imresize(np.ascontiguousarray(big[dy:dy + 64, dx:dx + 64]),
                                           1 / 2))
    train_root = Path("../shared/data/sr-train")
    make_sr_train(train_root)

    first = script.next("pixelmill upscale photo.png photo_x2.png --scale 2")
    script.run(first)
    assert read_image("photo_x2.png").shape == (96, 128, 3)
    script.run(first, expect=2)  # again: an existing OUTPUT is replaced only with --overwrite

    result = script.run(script.next("pixelmill upscale scan.tif scan_x4.tif --scale 4 "
                                    "--model edsr --memory 2GB"))
    assert result.out.startswith("ok:"), result.out
    assert read_tiff("scan_x4.tif").shape == (320, 384, 3)
    assert Path("scan_x4.tif.manifest.parquet").is_file()  # streamed: a resumable manifest
    before = mtimes(["scan_x4.tif"])
    result = script.run(script.next("pixelmill upscale scan.tif scan_x4.tif --scale 4 "
                                    "--model edsr --memory 2GB --resume"))
    assert "(1 from an earlier run)" in result.out and mtimes(["scan_x4.tif"]) == before

    before = mtimes(["photo_x2.png"])
    script.run(script.next("pixelmill upscale photo.png photo_x2.png --scale 2 --overwrite"))
    assert mtimes(["photo_x2.png"]) != before and read_image("photo_x2.png").shape == (96, 128, 3)

    command = script.next("pixelmill upscale photo.jpg big.png --scale 2 --model fsrcnn")
    if not torch.cuda.is_available():
        result = script.run(command, expect=2)  # README: a GPU torch cannot use, before work
        assert "--device" in result.err and "cuda" in result.err, result.err
        assert not Path("big.png").exists()
        command = command.sub("--device cuda", "--device cpu")
    script.run(command)
    assert read_image("big.png").shape == (80, 112, 3)

    result = script.run(script.next("pixelmill sr models"))
    listed = set(re.findall(r"^(edsr|fsrcnn|espcn)\s+x([234])\s+\d+\.\d+ dB", result.out, re.M))
    assert listed == {(m, s) for m in ("edsr", "fsrcnn", "espcn") for s in "234"}, result.out

    mean = re.compile(r"^mean \((\d+) images\)\s+([\d.]+) dB\s+SSIM ([\d.]+)\s+\[(.+)\]$", re.M)
    command = script.next("pixelmill sr eval Set5/ --scale 4 --model edsr")
    assert command.has_optional, command
    text = mean.search(script.run(command).out)
    assert text and text[1] == "5" and text[4] == "edsr x4", text
    scores = json.loads(script.run(command, optional=True).out)
    assert len(scores["images"]) == 5 and scores["scale"] == 4 and scores["model"] == "edsr"
    assert scores["mean"]["psnr"] == pytest.approx(float(text[2]), abs=1e-3)

    bicubic = mean.search(script.run(script.next("pixelmill sr eval Set5/ --scale 4 --model "
                                                 "bicubic")).out)
    assert bicubic and bicubic[4] == "bicubic x4"
    assert float(text[2]) > float(bicubic[2])  # "its baseline": EDSR beats it

    plus = mean.search(script.run(script.next("pixelmill sr eval Set5/ --scale 2 --model edsr "
                                              "--ensemble")).out)
    assert plus and plus[4] == "edsr+ensemble x2" and float(plus[2]) > 20

    result = script.run(script.next("pixelmill sr fuse f0.png f1.png f2.png f3.png fused.png "
                                    "--scale 2"))
    assert read_image("fused.png").shape == (64, 64, 3)
    found = [tuple(map(float, m)) for m in re.findall(r"dy ([-+][\d.]+) dx ([-+][\d.]+) px",
                                                     result.out)]
    assert len(found) == 4
    for (dy, dx), (sy, sx) in zip(found, shifts, strict=True):  # registered to ~0.1 px
        assert abs(abs(dy) - sy / 2) < 0.1 and abs(abs(dx) - sx / 2) < 0.1, (found, shifts)

    command = script.next("pixelmill sr train --model edsr --scale 2 --data "
                          "../shared/data/sr-train")
    result = script.run(command.sub("--minutes 50", "--minutes 0.2 --epochs 1 --iters 2 "
                                                    "--batch 4 --patch 16"))
    assert "best held-out PSNR" in result.out, result.out
    run_dir = Path("runs/edsr_x2")
    for name in ("edsr_x2.safetensors", "edsr_x2.json", "checkpoint.safetensors"):
        assert (run_dir / name).is_file(), name

    weights = Path("package-weights").resolve()
    weights.mkdir()
    monkeypatch.setattr(pixelmill.sr.weights, "WEIGHTS_DIR", weights)
    monkeypatch.setattr(pixelmill.sr.data, "default_data_dir", lambda: train_root.resolve())
    result = script.run(script.next(
        "pixelmill sr export runs/edsr_x2/edsr_x2.safetensors --to shipped/"))
    assert result.out.startswith("edsr_x2: held-out"), result.out
    from safetensors.numpy import load_file

    tensors = load_file("shipped/edsr_x2.safetensors")  # "fp16 + card with held-out scores"
    assert tensors and {t.dtype for t in tensors.values()} == {np.dtype(np.float16)}
    card = json.loads(Path("shipped/edsr_x2.json").read_text())
    assert card["validation"]["heldout_images"] >= 1 and card["validation"]["heldout_psnr"] > 0
    # "replace the shipped edsr_x2": the package's folder holds one; without --overwrite the
    # line is refused before any work and the shipped files stay as they were
    shipped = {"edsr_x2.safetensors": b"shipped weights", "edsr_x2.json": b"{}"}
    for name, data in shipped.items():
        (weights / name).write_bytes(data)
    line = script.next("pixelmill sr export runs/edsr_x2/edsr_x2.safetensors --overwrite")
    refused = script.run(line.sub(" --overwrite", ""), expect=2)
    assert "already exists (a shipped model" in refused.err, refused.err
    assert {name: (weights / name).read_bytes() for name in shipped} == shipped
    script.run(line)
    tensors = load_file(str(weights / "edsr_x2.safetensors"))
    assert tensors and {t.dtype for t in tensors.values()} == {np.dtype(np.float16)}
    assert json.loads((weights / "edsr_x2.json").read_text())["validation"]["heldout_psnr"] > 0


def run_engines_block(script: Script, request) -> None:
    """The same run on an existing Dask scheduler (S3 in and out) and a Spark standalone
    master; the make demo lines are checked, not run."""
    pytest.importorskip("distributed")
    pytest.importorskip("pyspark")
    from pixelmill.engines import ENGINE_NAMES
    from pixelmill.engines.dask import DaskEngine
    from pixelmill.engines.spark import SparkEngine
    from pixelmill.manifest import read_manifest
    from tests._clusters import dask_cluster

    monkeypatch = request.getfixturevalue("monkeypatch")
    on_dask, on_spark = count_maps(monkeypatch, DaskEngine), count_maps(monkeypatch, SparkEngine)
    files = make_cli_photos()
    write_readme_files("thumb.yaml")
    n = len(files)

    command = script.next("pixelmill run thumb.yaml s3://photos/ s3://thumbs/ --engine dask=")
    with moto_s3(monkeypatch, ["photos", "thumbs"], route_environment=True) as (_, fs), \
            dask_cluster(workers=2) as address:  # started after AWS_ENDPOINT_URL: inherited
        for rel, payload in files.items():
            fs.pipe(f"photos/{rel}", payload)
        result = script.run(command.sub("tcp://10.0.0.5:8786", address))
        assert f"{n} inputs: {n} ok, 0 invalid, 0 failed" in result.out, result.out
        outputs = [k for k in fs.find("thumbs") if not k.endswith((".parquet", ".html"))]
        assert len(outputs) == n, outputs
        rows = read_manifest("s3://thumbs/manifest.parquet")
        assert len(rows) == n and {r["status"] for r in rows} == {"ok"}
    assert on_dask["units"] >= n

    command = script.next("pixelmill run thumb.yaml hdfs:///photos/ hdfs:///thumbs/ --engine "
                          "spark=")
    local_out = Path("thumbs").resolve()
    command = command.sub("hdfs:///photos/", f"{Path('photos').resolve()}/")
    command = command.sub("hdfs:///thumbs/", f"{local_out}/")
    master = request.getfixturevalue("spark_master")  # tests/conftest.py: session-wide
    result = script.run(command.sub("spark://10.0.0.5:7077", master))
    assert f"{n} inputs: {n} ok, 0 invalid, 0 failed" in result.out, result.out
    assert len([p for p in local_out.rglob("*") if p.suffix in (".jpg", ".png")]) == n
    assert on_spark["units"] >= n

    for engine in ("dask", "spark"):  # not run (see the module docstring): checked
        command = script.next(f"make demo ENGINE={engine}")
        dry = subprocess.run([*command.argv(), "-n", "-C", str(REPO)], capture_output=True,
                             text=True, timeout=60)
        assert dry.returncode == 0, dry.stderr
        assert re.search(rf"-m pixelmill\.demo --engine {engine}$", dry.stdout, re.M), dry.stdout
        assert engine in ENGINE_NAMES


def run_learn_block(script: Script, request) -> None:
    """learn extract / train / evaluate / predict (Dask) / CNNs; index build / query / eval."""
    from pixelmill.engines.dask import DaskEngine
    from pixelmill.learn.datasets import write_digits
    from pixelmill.manifest import read_manifest

    on_dask = count_maps(request.getfixturevalue("monkeypatch"), DaskEngine)
    digits = write_digits("digits", limit=60)
    Path("new_images").mkdir()
    for path in digits[-4:]:
        shutil.copy(path, "new_images")
    photos = make_cli_photos()
    Path("photos/cat.jpg").unlink()  # every image in a label folder, as the README's photos/
    del photos["cat.jpg"]  # (unlabelled ones would train a class named 'None')

    command = script.next("cat > features.yaml <<'YAML'")
    script.run(command)
    assert "op: hog" in Path("features.yaml").read_text()

    result = script.run(script.next("pixelmill learn extract features.yaml digits/ --out "
                                    "features.parquet --label-from parent"))
    assert "60 images: 60 ok" in result.out, result.out
    rows = read_manifest("features.parquet")
    assert len(rows) == 60 and {r["status"] for r in rows} == {"ok"}
    assert {r["label"] for r in rows} == {str(d) for d in range(10)}
    assert {r["split"] for r in rows} == {"train", "val", "test"}
    assert all(len(r["vec_hog"]) > 0 for r in rows)

    result = script.run(script.next("pixelmill learn train features.parquet --model rbf_svm "
                                    "--out model/"))
    assert "trained rbf_svm" in result.out and Path("model/model.json").is_file()

    result = script.run(script.next("pixelmill learn evaluate model/ features.parquet"))
    assert re.search(r"accuracy \d\.\d+", result.out), result.out
    assert Path("model/report.html").is_file()  # "+ model/report.html"

    script.run(script.next("pixelmill learn predict model/ new_images/ --out "
                           "predictions.parquet --engine dask"))
    predicted = read_manifest("predictions.parquet")
    assert len(predicted) == 4 and {r["status"] for r in predicted} == {"ok"}
    assert all(r["predicted"] in {str(d) for d in range(10)} for r in predicted)
    assert on_dask["units"] >= 4

    result = script.run(script.next("pixelmill learn train features.parquet --model cnn "
                                    "--out cnn/ --epochs 20"))
    assert "trained cnn" in result.out and Path("cnn/model.json").is_file()

    command = script.next("pixelmill learn train --model cnn --images photos/ "
                          "--label-from parent --out ")
    result = script.run(command)
    out_dir = Path(command.argv()[command.argv().index("--out") + 1])
    assert (out_dir / "model.json").is_file() and Path("cnn/model.json").is_file()
    assert f"{len(photos)} images, {len(labels_of(photos))} classes" in result.out, result.out

    result = script.run(script.next("pixelmill index build features.parquet --out index/"))
    assert "indexed 60 vectors" in result.out and "exact" in result.out, result.out

    result = script.run(script.next("pixelmill index query index/ digits/3/00003.png -k 10 "
                                    "--report query.html"))
    hits = re.findall(r"^\s*(\d+)\s+(-?[\d.]+)\s+(\S+)\s+\[(\S+)\]$", result.out, re.M)
    assert len(hits) == 10, result.out
    assert hits[0][2].endswith("digits/3/00003.png") and float(hits[0][1]) == \
        pytest.approx(0, abs=1e-4)
    assert Path("query.html").is_file() and "00003.png" in Path("query.html").read_text()

    result = script.run(script.next("pixelmill index eval index/ -k 10"))
    figures = dict(re.findall(r"(mAP@10|recall@10|precision@10) (\d\.\d+)", result.out))
    assert set(figures) == {"mAP@10", "recall@10", "precision@10"}, result.out
    assert all(0 < float(v) <= 1 for v in figures.values())


# ---------------------------------------------------------------------------------------------
# The tests


RUNNERS = [
    Runner("scan", "pixelmill scan photos/", run_scan_block),
    Runner("run", "pixelmill run thumb.yaml photos/ thumbs/", run_batch_block),
    Runner("tile", "pixelmill tile sharpen.yaml", run_tile_block, (pytest.mark.dask,)),
    Runner("sr", "pixelmill sr eval", run_sr_block),
    Runner("engines", "make demo ENGINE=", run_engines_block,
           (pytest.mark.dask, pytest.mark.spark, pytest.mark.slow)),
    Runner("learn", "pixelmill learn extract", run_learn_block, (pytest.mark.dask,)),
]


def block_of(runner: Runner) -> Block:
    return block_holding(bash_blocks(), runner.marker, runner.name, "bash")


def test_every_bash_block_is_run():
    blocks = bash_blocks()
    assert blocks, "README.md has no ```bash blocks"
    for block in blocks:
        claimed = [r.name for r in RUNNERS if r.marker in block.code]
        commands = parse_commands(block)
        if all(c.heredoc is None and re.fullmatch(r"(\.venv/bin/)?python", c.argv()[0])
               and c.argv()[1].startswith("benchmarks/bench_") for c in commands):
            assert not claimed, block  # benchmark lines: tests/test_benchmarks.py runs them
            continue
        assert len(claimed) == 1, (
            f"README.md bash block {block.number} (line {block.line}) is claimed by "
            f"{claimed or 'no runner'}: give it exactly one in tests/test_readme_cli.py")
    for runner in RUNNERS:
        block_of(runner)


def test_commands_are_parsed_as_a_shell_would():
    block = Block(1, 10, "cat > f.yaml <<'YAML'\nsteps: []  # kept\nYAML\n"
                         "pixelmill scan 'a b/**/*.png' -r \\\n    --out x.parquet  # comment\n\n"
                         "pixelmill sr eval D/ [--json]   # optional\n")
    heredoc, scan, sr_eval = parse_commands(block)
    assert heredoc.heredoc == ("f.yaml", "steps: []  # kept\n") and heredoc.line == 10
    assert scan.line == 13 and scan.argv() == ["pixelmill", "scan", "a b/**/*.png", "-r",
                                               "--out", "x.parquet"]
    assert sr_eval.has_optional and sr_eval.argv() == ["pixelmill", "sr", "eval", "D/"]
    assert sr_eval.argv(optional=True)[-1] == "--json"
    with pytest.raises(AssertionError, match="no longer matches"):
        scan.sub("--out y.parquet", "--out z.parquet")


@contextlib.contextmanager
def one_thread_per_pool():
    """One thread in each OpenMP/BLAS pool and in torch's, in this process (where the commands
    run), as tests/learn do: on two cores shared by many processes, pools spin-wait (a CNN
    line took 19 s with two torch threads, 4 s with one)."""
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("runner", [pytest.param(r, id=r.name, marks=r.marks) for r in RUNNERS])
def test_readme_bash_block(runner: Runner, request, tmp_path, monkeypatch, capsys):
    """The block's lines run as written (but for the listed substitutions), in order, and do
    what the README says."""
    work = tmp_path / "work"  # ../shared/data/sr-train is then tmp_path/shared/...
    work.mkdir()
    monkeypatch.chdir(work)
    script = Script(block_of(runner), capsys)
    with one_thread_per_pool():
        runner.run(script, request)
    script.finish()
