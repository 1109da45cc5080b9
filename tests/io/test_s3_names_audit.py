"""Object-store key and naming edge cases, end to end, on a local S3 (moto, 127.0.0.1).

Keys that are hard: spaces, NFC and NFD forms of one name, ``# ? % + = & [ * ~ : \\``,
leading and trailing spaces, ``a//b``, ``./`` and ``../`` segments, a ~1,000-byte key, names
differing only by case, folder markers (keys ending in ``/``, with and without content), an
object ``x.jpg`` beside a folder ``x.jpg/``, an empty object, other and uppercase extensions,
sibling prefixes (``set``, ``set2``, ``set-old``, an object ``set``). boto3's
``list_objects_v2`` is the reference for what a listing holds.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import time
import unicodedata
from pathlib import Path

import cv2
import numpy as np
import pytest

from pixelmill import storage
from pixelmill.engines import InlineEngine
from pixelmill.jobs import plan_units, render_name, run
from pixelmill.manifest import journal_path, read_manifest
from tests._s3server import s3_server

BUCKET = "names-audit"
NFC, NFD = unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café")
LONG = "set/" + "/".join(c * 200 for c in "LMN") + "/" + "x" * 180 + ".jpg"  # 790 bytes

#: relative key below ``set/`` -> kind
NAMES = {
    "plain.jpg": "jpg", "with space.jpg": "jpg", f"{NFC}.jpg": "jpg", f"{NFD}.jpg": "jpg",
    "日本語/写真.png": "png", "hash#1.jpg": "jpg", "q?x=1.jpg": "jpg", "pct%20lit.jpg": "jpg",
    "pct%2Fslash.jpg": "jpg", "plus+sign.jpg": "jpg", "eq=val&amp.jpg": "jpg", "br[1].jpg": "jpg",
    "star*.jpg": "jpg", "tilde~.jpg": "jpg", " lead.jpg": "jpg", "trail .jpg": "jpg",
    "dir /in.jpg": "jpg", "colon:name.jpg": "jpg", "dc::chain.jpg": "jpg",
    "back\\slash.jpg": "jpg", ".hidden.jpg": "jpg", "Case.jpg": "jpg", "case.jpg": "jpg",
    "UPPER.JPG": "jpg", "Mixed.PnG": "png", "empty.jpg": "empty", "notes.txt": "text",
    "folder/": "marker", "folder/in.jpg": "jpg", "fullmarker/": "markerdata",
    "onlymarker/": "marker", "x.jpg": "jpg", "x.jpg/": "marker", "x.jpg/y.jpg": "jpg",
    "dbl//b.jpg": "jpg", "/lead-slash.jpg": "jpg", "./dot.jpg": "jpg", "../dotdot.jpg": "jpg", "sub/../up.jpg": "jpg",
    LONG[4:]: "jpg",
}
#: keys outside ``set/``: siblings that must never be listed with it
SIBLINGS = {"set2/sib.jpg": "jpg", "set-old/sib.jpg": "jpg", "set.jpg": "jpg", "set": "jpg"}


def _image(i: int, ext: str) -> bytes:
    rng = np.random.default_rng(i)
    img = (rng.random((20, 28, 3)) * 255).astype(np.uint8)
    ok, buf = cv2.imencode("." + ext, img)
    assert ok
    return buf.tobytes()


def _body(i: int, kind: str) -> bytes:
    return {"jpg": lambda: _image(i, "jpg"), "png": lambda: _image(i, "png"),
            "marker": lambda: b"", "markerdata": lambda: b"hello", "empty": lambda: b"",
            "text": lambda: b"text"}[kind]()


@pytest.fixture(scope="module")
def so():
    """One moto server for the module, with the hard keys in one bucket."""
    import boto3

    with s3_server(buckets=[BUCKET]) as options:
        client = boto3.client("s3", endpoint_url=options["client_kwargs"]["endpoint_url"],
                              aws_access_key_id="testing", aws_secret_access_key="testing",
                              region_name="us-east-1")
        keys = {"set/" + k: v for k, v in NAMES.items()} | SIBLINGS
        for i, (key, kind) in enumerate(keys.items()):
            client.put_object(Bucket=BUCKET, Key=key, Body=_body(i, kind))
        options = dict(options)
        options["_client"] = client
        yield options


def _opts(so: dict) -> dict:
    return {k: v for k, v in so.items() if k != "_client"}


def _reference(so: dict, prefix: str, delimiter: str | None = None) -> dict[str, int]:
    """``{key: size}`` of the objects boto3 lists (folder markers left out: not files)."""
    out = {}
    kw = {"Delimiter": delimiter} if delimiter else {}
    for page in so["_client"].get_paginator("list_objects_v2").paginate(
            Bucket=BUCKET, Prefix=prefix, **kw):
        out.update({c["Key"]: c["Size"] for c in page.get("Contents", [])
                    if not c["Key"].endswith("/")})
    return out


def _listed(entries) -> dict[str, int]:
    uris = [e.uri for e in entries]
    assert len(uris) == len(set(uris)), "a URI listed twice"
    assert all(u.startswith(f"s3://{BUCKET}/") for u in uris)
    return {e.uri[len(f"s3://{BUCKET}/"):]: e.size for e in entries}


def test_listings_hold_exactly_the_objects_boto3_lists(so):
    """Folder markers (``folder/``, ``fullmarker/`` with 5 bytes, ``x.jpg/``) were files:
    with ``--glob '*'`` inputs named ``folder`` (no such object), and ``x.jpg/`` a second
    ``s3://.../x.jpg``, which the planner refused as a name clash (exit 2). A non-recursive
    listing lost ``x.jpg``: the folder ``x.jpg/`` replaced it in a dict keyed by name."""
    o = _opts(so)
    everything = storage.list_files(f"s3://{BUCKET}/set/", recursive=True, include=["*"],
                                    storage_options=o)
    assert _listed(everything) == _reference(so, "set/")
    images = storage.list_files(f"s3://{BUCKET}/set/", recursive=True, storage_options=o)
    assert _listed(images) == {k: n for k, n in _reference(so, "set/").items()
                               if k.lower().endswith((".jpg", ".png"))}
    assert {e.relpath for e in images} >= {"x.jpg", "x.jpg/y.jpg", "UPPER.JPG", "Mixed.PnG",
                                           f"{NFC}.jpg", f"{NFD}.jpg", "Case.jpg", "case.jpg"}
    flat = storage.list_files(f"s3://{BUCKET}/set/", include=["*"], storage_options=o)
    assert _listed(flat) == _reference(so, "set/", delimiter="/")
    assert "set/x.jpg" in _listed(flat)


def test_a_trailing_slash_names_the_folder_beside_an_object_of_that_name(so, capsys):
    """``s3://b/set/`` listed the single object ``set`` (its 40 neighbours under ``set/``
    silently left out): fsspec strips the slash, and the object won."""
    o = _opts(so)
    folder = storage.list_files(f"s3://{BUCKET}/set/", recursive=True, include=["*"],
                                storage_options=o)
    assert _listed(folder) == _reference(so, "set/")
    one = storage.list_files(f"s3://{BUCKET}/set", recursive=True, storage_options=o)
    assert [e.uri for e in one] == [f"s3://{BUCKET}/set"]
    assert f"write s3://{BUCKET}/set/ for the folder" in capsys.readouterr().err
    assert [e.relpath for e in storage.list_files(f"s3://{BUCKET}/set.jpg/",
                                                   storage_options=o)] == ["set.jpg"]


def _glob_reference(keys, pattern: str) -> set[str]:
    """The keys boto3 lists that fsspec's glob syntax matches (the syntax is fsspec's; what
    is listed is the store's)."""
    from fsspec.utils import glob_translate

    rx = re.compile(glob_translate(pattern))
    return {k for k in keys if rx.match(k)}


@pytest.mark.parametrize("pattern", ["set/*.jpg", "set/*", "set/**/*.jpg", "set*/*.jpg",
                                     "set/[cC]ase.jpg", "set/x.jpg*", "set/br*"])
def test_glob_urls_match_like_a_listing_filtered_by_the_pattern(so, pattern):
    """``s3://b/set/*.jpg`` lost ``x.jpg`` (fs.glob keys its answer by name: the folder
    ``x.jpg/`` replaced the object) and ``set/*`` listed the markers as files."""
    entries = storage.list_files(f"s3://{BUCKET}/{pattern}", include=["*"],
                                 storage_options=_opts(so))
    keys = _reference(so, "")
    assert set(_listed(entries)) == _glob_reference(keys, pattern)


def test_a_double_colon_is_part_of_a_name_not_an_fsspec_chain(so, tmp_path):
    """``s3://b/set/dc::chain.jpg`` failed in every worker ("'target_options' is not an option
    of the filesystem"), and a local ``12::30.jpg`` read with storage options given read the
    file ``12`` instead: fsspec takes ``::`` for a chain of filesystems."""
    o = _opts(so)
    key = "set/dc::chain.jpg"
    expected = so["_client"].get_object(Bucket=BUCKET, Key=key)["Body"].read()
    assert storage.read_bytes(f"s3://{BUCKET}/{key}", o) == expected
    storage.write_atomic(f"s3://{BUCKET}/written/a::b.jpg", b"new", o)
    assert so["_client"].get_object(Bucket=BUCKET, Key="written/a::b.jpg")["Body"].read() == b"new"
    (tmp_path / "12").write_bytes(b"another file")
    (tmp_path / "12::30.jpg").write_bytes(b"the file")
    assert storage.read_bytes(str(tmp_path / "12::30.jpg"), {"auto_mkdir": True}) == b"the file"
    assert storage.read_bytes(f"file://{tmp_path}/12::30.jpg", {"auto_mkdir": True}) == b"the file"
    import fsspec

    fsspec.filesystem("memory").pipe("/names-audit/a::b.jpg", b"in memory")
    assert storage.read_bytes("memory://names-audit/a::b.jpg") == b"in memory"
    # real chains are still chains
    fs, _ = storage.get_fs(f"simplecache::s3://{BUCKET}/{key}", {"s3": o})
    assert type(fs).__name__ == "SimpleCacheFileSystem"


def _rows(manifest: str, so=None) -> dict[str, dict]:
    rows = read_manifest(manifest, so)
    assert len(rows) == len({r["key"] for r in rows})
    return {r["relpath"]: r for r in rows}


def test_a_job_over_the_hard_keys_and_the_same_files_in_a_local_folder(so, tmp_path):
    """One input with a ``..`` segment (``set/../dotdot.jpg``, a legal key) stopped the whole
    job with a usage error blaming the naming template; now that input fails with a reason.
    Every other input gets one row and its output at the key the template promises, and a
    local copy of the collection gives the same relative paths, statuses and bytes."""
    o = _opts(so)
    summary = run({"steps": [{"op": "gaussian", "sigma": 1}]}, f"s3://{BUCKET}/set/",
                  f"s3://{BUCKET}/out", engine=InlineEngine(), storage_options=o,
                  progress=False, report=False)
    listed = storage.list_files(f"s3://{BUCKET}/set/", recursive=True, storage_options=o)
    rows = _rows(f"s3://{BUCKET}/out/manifest.parquet", o)
    assert sorted(r["key"] for r in rows.values()) == sorted(e.uri for e in listed)
    dotdot = {"../dotdot.jpg", "sub/../up.jpg"}
    for rel, row in rows.items():
        if rel in dotdot:
            assert row["status"] == "failed" and "'..'" in row["reason"]
            assert row["output"] is None
        elif rel == "empty.jpg":
            assert row["status"] == "invalid" and "empty" in row["reason"]
        else:
            assert row["status"] == "ok", (rel, row["reason"])
            ext = "png" if rel.lower().endswith(".png") else "jpg"
            assert row["output"] == f"s3://{BUCKET}/out/" + render_name(
                "{parent}/{stem}.{ext}", rel, ext)
    assert (summary.ok, summary.invalid, summary.failed) == (len(rows) - 3, 1, 2)
    written = _reference(so, "out/")
    assert set(written) - {"out/manifest.parquet"} == {
        r["output"][len(f"s3://{BUCKET}/"):] for r in rows.values() if r["output"]}
    assert rows["dc::chain.jpg"]["status"] == "ok"
    assert rows[f"{NFC}.jpg"]["output"] != rows[f"{NFD}.jpg"]["output"]

    # the same collection in a local folder (the names a local folder can hold)
    local = tmp_path / "set"
    for rel, row in rows.items():
        key = row["key"][len(f"s3://{BUCKET}/"):]
        parts = key.split("/")
        if "." in parts or ".." in parts or "" in parts or rel.startswith("x.jpg/"):
            continue
        body = so["_client"].get_object(Bucket=BUCKET, Key=key)["Body"].read()
        (local / rel).parent.mkdir(parents=True, exist_ok=True)
        (local / rel).write_bytes(body)
    run({"steps": [{"op": "gaussian", "sigma": 1}]}, str(local), str(tmp_path / "out"),
        engine=InlineEngine(), progress=False, report=False)
    local_rows = _rows(str(tmp_path / "out" / "manifest.parquet"))
    assert set(local_rows) == {r for r in rows if (local / r).is_file()}
    for rel, row in local_rows.items():
        s3row = rows[rel]
        assert (row["status"], row["sha256"]) == (s3row["status"], s3row["sha256"]), rel
        if row["output"]:
            assert os.path.relpath(row["output"], tmp_path / "out") == s3row["output"][
                len(f"s3://{BUCKET}/out/"):]


def test_a_local_output_that_would_be_a_file_and_a_folder_fails_the_file_in_the_plan(so,
                                                                                      tmp_path):
    """``x.jpg`` and ``x.jpg/y.jpg`` both live on S3, not in a local folder: one of them
    failed at write time, whichever a worker reached second (a resumed run could differ from
    an uninterrupted one). The plan now fails ``x.jpg`` for a local output, every time."""
    o = _opts(so)
    units = plan_units(f"s3://{BUCKET}/set/", str(tmp_path / "out"), include=["x.jpg*"],
                       storage_options=o)
    by_rel = {u.relpath: u for u in units}
    assert set(by_rel) == {"x.jpg", "x.jpg/y.jpg"}
    assert by_rel["x.jpg"].output is None and "folder of other outputs" in by_rel["x.jpg"].error
    assert by_rel["x.jpg/y.jpg"].output == str(tmp_path / "out" / "x.jpg" / "y.jpg")
    remote = plan_units(f"s3://{BUCKET}/set/", f"s3://{BUCKET}/o", include=["x.jpg*"],
                        storage_options=o)
    assert all(u.error is None and u.output for u in remote)  # an object store holds both


def test_a_long_name_that_fits_the_folder_is_written_locally(tmp_path):
    """A last key segment of 218-255 bytes could be written, but its temporary name
    (``.NAME.<32 hex>.tmp``, 38 bytes more) could not: every such input failed."""
    for name in ["d" * 230 + ".jpg", "é" * 125 + ".png"]:
        assert len(os.fsencode(name)) <= 255
        storage.write_atomic(str(tmp_path / name), b"data")
        assert (tmp_path / name).read_bytes() == b"data"
    assert os.listdir(tmp_path).__len__() == 2  # no temporary left


def test_sigkill_then_resume_over_hard_keys_equals_an_uninterrupted_run(so, tmp_path):
    """S3 input, local output: the command SIGKILLed mid-run, then ``--resume``, gives the
    outputs and rows of an uninterrupted run (with every hard key in the collection)."""
    o = _opts(so)
    client = so["_client"]
    rng = np.random.default_rng(3)
    for i in range(24):
        img = (rng.random((240, 320, 3)) * 255).astype(np.uint8)
        client.put_object(Bucket=BUCKET, Key=f"res/fill {i:02d}#.jpg",
                          Body=cv2.imencode(".jpg", img)[1].tobytes())
    for i, (rel, kind) in enumerate(NAMES.items()):
        client.put_object(Bucket=BUCKET, Key="res/" + rel, Body=_body(100 + i, kind))
    pipe = tmp_path / "p.yaml"
    pipe.write_text("steps:\n  - op: gaussian\n    sigma: 3\n  - op: median\n    size: 5\n")
    clean = tmp_path / "clean"
    run(str(pipe), f"s3://{BUCKET}/res/", str(clean), engine=InlineEngine(), storage_options=o,
        progress=False, report=False)
    out = tmp_path / "out"
    env = dict(os.environ, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
               AWS_DEFAULT_REGION="us-east-1")
    import json

    cmd = [sys.executable, "-m", "pixelmill", "run", str(pipe), f"s3://{BUCKET}/res/", str(out),
           "--workers", "1", "--quiet", "--no-report", "--storage-option",
           "client_kwargs=" + json.dumps(o["client_kwargs"]),
           "--storage-option", "use_listings_cache=false"]
    journal = Path(journal_path(str(out / "manifest.parquet")))
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.exists() and journal.read_text().count("\n") >= 3:
            break
        time.sleep(0.005)
    if proc.poll() is not None:
        pytest.fail(f"the run ended before it could be stopped: {proc.communicate()[1]!r}")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert not (out / "manifest.parquet").exists()
    done = subprocess.run([*cmd, "--resume"], env=env, capture_output=True, timeout=120)
    assert done.returncode == 3, done.stderr  # the empty file, the two '..' names, x.jpg

    def files(root: Path) -> dict[str, str]:
        return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in root.rglob("*") if p.is_file() and p.name != "manifest.parquet"}

    def comparable(root: Path) -> dict[str, dict]:
        return {k: {c: (os.path.relpath(v, root) if c == "output" and v else v)
                    for c, v in r.items() if not c.startswith("t_") and c != "reason"}
                for k, r in _rows(str(root / "manifest.parquet")).items()}

    assert files(out) == files(clean)
    assert comparable(out) == comparable(clean)
    assert len(files(out)) == len(comparable(clean)) - 4


def test_a_glob_within_one_folder_lists_that_folder_alone(so, monkeypatch):
    """``s3://b/set/*.jpg`` read every key below ``set/`` (``set/日本語/…``, ``set/LLL…/``),
    and ``s3://b/*.jpg`` every key of the bucket, to find a few objects at one level: on a
    bucket of millions of photos in sub-folders, hours of listing for a handful of inputs."""
    o = _opts(so)
    fs, _ = storage.get_fs(f"s3://{BUCKET}/set/", o)
    seen: list[str] = []
    original = fs._iterdir

    async def counting(*args, **kwargs):
        async for info in original(*args, **kwargs):
            seen.append(info["name"])
            yield info

    monkeypatch.setattr(fs, "_iterdir", counting, raising=False)
    entries = storage.list_files(f"s3://{BUCKET}/set/*.jpg", include=["*"], storage_options=o)
    assert set(_listed(entries)) == _glob_reference(_reference(so, ""), "set/*.jpg")
    assert seen and not [n for n in seen if "/" in n[len(f"{BUCKET}/set/"):].rstrip("/")]
    seen.clear()
    entries = storage.list_files(f"s3://{BUCKET}/set/**/*.jpg", include=["*"],
                                 storage_options=o)  # across folders: all of them, still
    assert set(_listed(entries)) == _glob_reference(_reference(so, ""), "set/**/*.jpg")
    assert f"{BUCKET}/{LONG}" in seen


def test_a_local_output_named_by_a_file_url_fails_the_file_in_the_plan_too(so, tmp_path):
    """``file:///.../out`` is the same local folder as ``/.../out``: the plan left both
    ``x.jpg`` and ``x.jpg/y.jpg`` in, and which was written depended on worker timing."""
    units = plan_units(f"s3://{BUCKET}/set/", f"file://{tmp_path / 'out'}", include=["x.jpg*"],
                       storage_options=_opts(so))
    by_rel = {u.relpath: u for u in units}
    assert by_rel["x.jpg"].output is None and "folder of other outputs" in by_rel["x.jpg"].error
    assert by_rel["x.jpg/y.jpg"].error is None and by_rel["x.jpg/y.jpg"].output
