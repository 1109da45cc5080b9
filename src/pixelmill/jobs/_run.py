"""Running a job: plan, check the output, map units on an engine, keep the manifest, resume."""

from __future__ import annotations

import contextlib
import hashlib
import json
import numbers
import os
import posixpath
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from pixelmill import storage
from pixelmill._tables import iter_rows
from pixelmill.engines import memory_store_here
from pixelmill.errors import ExitCode, InvalidParameterError, StorageError, UsageError
from pixelmill.jobs._plan import (
    DEFAULT_NAME_TEMPLATE,
    WorkUnit,
    check_format,
    check_quality_applies,
    plan_units,
)
from pixelmill.jobs._worker import TILED_ROUTE, JobSpec, _reason, process_unit
from pixelmill.learn.references import check_outside_models, model_records, resolve_models
from pixelmill.manifest import (
    ManifestWriter,
    column,
    earlier_run,
    foreign_output,
    is_tile_row,
    journal_in_the_way,
    keeps_journal,
    select_rows,
)
from pixelmill.pipeline import Pipeline, load_pipeline

__all__ = ["JobSummary", "default_manifest_uri", "execute", "run"]

MANIFEST_NAME = "manifest.parquet"
_TMP_RE = re.compile(r"^\..+\.[0-9a-f]{32}\.tmp$")


@dataclass
class JobSummary:
    """What a job did; ``exit_code`` is the CLI's (OK, PARTIAL or NO_INPUT)."""

    total: int  #: inputs planned
    processed: int  #: inputs processed by this run (the rest were ok already: resume)
    ok: int  #: rows with status ok (whole manifest for these inputs)
    invalid: int
    failed: int
    elapsed: float  #: seconds this run took
    manifest: str
    report: str | None = None
    output: str | None = None
    reasons: dict[str, str] = field(default_factory=dict)  #: key -> reason, invalid/failed

    @property
    def skipped(self) -> int:
        return self.total - self.processed

    @property
    def images_per_s(self) -> float:
        return self.processed / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def exit_code(self) -> ExitCode:
        if self.total == 0:
            return ExitCode.NO_INPUT
        return ExitCode.OK if self.invalid == 0 and self.failed == 0 else ExitCode.PARTIAL


def check_timeout(timeout: Any) -> None:
    """``--timeout``: a finite number of seconds > 0, at most :data:`threading.TIMEOUT_MAX`
    (what a wait can be given; ``inf`` or ``1e300`` would overflow once workers started)."""
    import math
    import threading

    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real) or not timeout > 0 \
            or not math.isfinite(timeout) or timeout > threading.TIMEOUT_MAX:
        raise InvalidParameterError(
            f"--timeout: expected a finite number of seconds > 0 and <= "
            f"{threading.TIMEOUT_MAX:.0f}, got {timeout!r}", field="timeout")


def default_manifest_uri(output: str | None) -> str:
    """``OUTPUT/manifest.parquet``; a measure-only job must name its manifest."""
    if output is None:
        raise UsageError("manifest: a measure-only job (output=None) needs manifest=PATH")
    return storage.join(str(output), MANIFEST_NAME)


def _engine_kind(engine: Any) -> str | None:
    """``local``, ``dask``, ``spark`` for an engine spec (None: local), else the name of an
    engine of the caller's own (``inline`` for an in-process one)."""
    if isinstance(engine, str) or engine is None:
        from pixelmill.engines import parse_engine_spec

        return parse_engine_spec(engine)[0]
    return getattr(engine, "name", None)


def _runs_here(engine: Any) -> bool:
    """Whether the job runs on this machine: the local engine (named, or one of the caller's),
    or an in-process engine. A Dask or Spark cluster's workers may have other devices."""
    return _engine_kind(engine) in ("local", "inline")


def _memory_job(engine: Any, units: Sequence[WorkUnit], output: str | None,
                timeout: float | None) -> bool:
    """Whether the job reads or writes a ``memory://`` store, which only this process sees:
    on the local engine it then runs here, in-process (True); a Dask or Spark engine is
    refused before any work (its workers would read and write stores of their own)."""
    uris = [output or "", *(unit.uri for unit in units)]
    if not memory_store_here(uris, engine):
        return False
    mem = next(u for u in uris if u.startswith("memory://"))
    if timeout is not None:
        raise InvalidParameterError(
            f"--timeout: {mem} is in a memory:// store, so the job runs in this process, where "
            "an input cannot be stopped; drop --timeout", field="timeout")
    return True


def _existing_outputs(units: Sequence[WorkUnit], output: str, so: Mapping[str, Any]) -> list[str]:
    if not storage.exists(output, so, field="OUTPUT"):
        return []
    try:
        present = {e.uri for e in storage.list_files(output, recursive=True, images_only=False,
                                                      storage_options=so, unlisted=[])}
    except Exception:
        return []
    return [u.output for u in units if u.output in present]


def _remove_stale_temporaries(output: str, so: Mapping[str, Any]) -> None:
    """Temporary files left by a writer that was killed mid-write (local outputs only)."""
    fs, root = storage.get_fs(output, so)
    if not storage._is_local(fs) or not os.path.isdir(root):
        return
    for folder, _, files in os.walk(root):
        for name in files:
            if _TMP_RE.match(name):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(folder, name))


def _remove_manifest_temporaries(uri: str, so: Mapping[str, Any]) -> None:
    """Temporaries of the manifest and of its report left by a job killed while writing them
    (local manifests only): beside a manifest outside OUTPUT, nothing else removes them. Only
    those two names' temporaries are removed, not other files of a folder the user keeps."""
    from pixelmill.report import default_report_uri

    fs, path = storage.get_fs(uri, so)
    if not storage._is_local(fs):
        return
    folder = os.path.dirname(path) or "."
    names = {os.path.basename(path),
             os.path.basename(storage.get_fs(default_report_uri(uri), so)[1])}
    try:
        entries = os.listdir(folder)
    except OSError:
        return
    for entry in entries:
        # ".NAME.<32 hex>.tmp": the temporary name storage.write_atomic gives NAME
        if _TMP_RE.match(entry) and entry[1:-len(".0123456789abcdef0123456789abcdef.tmp")] in names:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(folder, entry))


#: inputs whose decoded pixels are always 8-bit (other formats may hold 16-bit or float)
_EIGHT_BIT_INPUTS = {"jpg", "jpeg", "jpe", "jfif", "webp", "gif", "bmp"}


def _check_output_formats(pipe: Pipeline, units: Sequence[WorkUnit], format: str | None) -> None:
    """Refuse, before any work, an output format that no input of the plan could be written
    in: the pipeline's result dtype (a float32 gradient map, int32 labels) is known from the
    registry for every input dtype its input formats can decode to."""
    from pixelmill.codecs import check_encodable

    seen: set[tuple[bool, str]] = set()
    for unit in units:
        if unit.format is None:
            continue
        ext = posixpath.splitext(unit.relpath)[1].lower().lstrip(".")
        key = (ext in _EIGHT_BIT_INPUTS, unit.format)
        if key in seen:
            continue
        seen.add(key)
        ins = ("uint8",) if key[0] else ("uint8", "uint16", "float32")
        outs = sorted({pipe.output_dtype(d) for d in ins})
        problems = []
        for dtype in outs:
            try:
                check_encodable((1, 1), dtype, unit.format)
            except InvalidParameterError as e:
                problems.append(str(e).removeprefix("image: ").split(";")[0])
        if len(problems) == len(outs):  # every input of this kind would fail at its encode
            field = "--format" if format else "OUTPUT format (each input's own; set --format)"
            holds = [f for f in ("png", "tif") if all(_encodable(d, f) for d in outs)]
            hint = (f"use --format {holds[0]}" if holds else
                    "no image format holds them: add a converting step, or --measure-only")
            raise InvalidParameterError(
                f"{field}: this pipeline makes {'/'.join(outs)} images and {problems[0]}; "
                f"{hint}", field="format")


def _encodable(dtype: str, fmt: str) -> bool:
    from pixelmill.codecs import check_encodable

    try:
        check_encodable((1, 1), dtype, fmt)
    except InvalidParameterError:
        return False
    return True


def _unit_failure_row(unit: WorkUnit, failure: Any) -> dict[str, Any]:
    kind = getattr(failure, "kind", "crash")
    row = {"key": unit.key, "uri": unit.uri, "relpath": unit.relpath, "status": "failed",
           "reason": f"{kind}: {failure.reason}"}
    if unit.label is not None:
        row["label"] = unit.label
    return row


def _unit_error_row(unit: WorkUnit, fingerprint: str) -> dict[str, Any]:
    """The ``failed`` row of an input that could not be processed at all (a folder of the
    input that could not be listed: its images are unknown, so they are not silently left
    out)."""
    row = {"key": unit.key, "uri": unit.uri, "relpath": unit.relpath, "status": "failed",
           "reason": unit.error, "pipeline": fingerprint}
    if unit.label is not None:
        row["label"] = unit.label
    return row


def _open_progress(total: int, enabled: bool) -> Any:
    try:
        from pixelmill.progress import Progress
    except ImportError:  # pragma: no cover - foundation not installed
        return contextlib.nullcontext(None)
    return Progress(total, what="images", enabled=enabled)


def execute(
    engine: Any,
    fn: Callable[[WorkUnit], dict[str, Any]],
    units: Sequence[WorkUnit],
    writer: ManifestWriter,
    *,
    timeout: float | None = None,
    batch_size: int | None = None,
    progress: Any = None,
) -> list[dict[str, Any]]:
    """Map ``fn`` over ``units`` on ``engine``, appending each row to ``writer`` as it finishes.

    A unit whose worker crashed or timed out becomes a ``failed`` row. Rows asking to be run
    tile by tile (``_route``) are not written: they are returned for the driver to handle.
    """
    deferred = []
    for index, result in engine.map(fn, units, timeout=timeout, batch_size=batch_size):
        unit = units[index]
        row = result if isinstance(result, dict) else _unit_failure_row(unit, result)
        if row.get("_route") == TILED_ROUTE:
            deferred.append(row)
            continue
        stop = row.pop("_stop", None)
        writer.append(row)
        if progress is not None:
            progress.advance(status=row["status"])
        if stop is not None:  # OUTPUT is full or read-only: every other write would fail too
            raise StorageError(
                f"OUTPUT: cannot write {storage.printable(str(unit.output))}"
                f": {stop}; the job stopped after {writer.appended} inputs (their rows are "
                "kept): make room, then run again with --resume")
    return deferred


def _tiled_output(uri: str) -> str:
    """Tiled jobs write tiled BigTIFF: the planned output name with a ``.tif`` extension."""
    stem, ext = posixpath.splitext(uri)
    return uri if ext.lower() in (".tif", ".tiff") else stem + ".tif"


class _TileRowsOnly:
    """The job's manifest writer as the tiled runner sees it: the runner's tile rows go in, its
    own row for the image does not. The job appends the image's row itself right after (with
    ``relpath``, ``label``, ``tiled`` and the job's fingerprint); a run killed between the two
    appends left the runner's row as the input's ``ok`` row, which ``--resume`` took as done
    (its final row not the uninterrupted run's) or, with ``--label-from`` or a model, refused
    as another pipeline's."""

    def __init__(self, writer: ManifestWriter, key: str) -> None:
        self._writer, self._key = writer, key

    def append(self, row: Mapping[str, Any]) -> None:
        if row.get("key") != self._key:
            self._writer.append(row)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._writer, name)


def _run_tiled_rows(pipeline: Pipeline, rows: Iterable[dict[str, Any]],
                    units_by_key: Mapping[str, WorkUnit], engine: Any, writer: ManifestWriter, *,
                    resume: bool, memory: Any, so: Mapping[str, Any], progress: Any,
                    taken: Mapping[str, str] | None = None) -> None:
    """Hand each routed input to :func:`pixelmill.tiled.run_tiled`; one row per input after.

    ``taken`` maps every planned output URI to its input: a tiled output (``.tif``) that would
    replace another input's output fails its own row instead of overwriting that result.
    """
    from pixelmill.errors import DecodeError

    try:
        from pixelmill.tiled import run_tiled
    except ImportError:
        run_tiled = None
    taken = dict(taken or {})
    for row in rows:
        # a tiled output is a BigTIFF, whatever the worker's encoding would have been
        row = {k: v for k, v in row.items() if k not in ("_route", "encoding")}
        unit = units_by_key[row["key"]]
        pixels = (row.get("width") or 0) * (row.get("height") or 0)
        if run_tiled is None:
            row.update(status="failed", reason=(
                f"tiling: the image has {pixels} pixels, above tile_threshold, and tiled "
                "processing (pixelmill.tiled) is not available"))
        elif taken.get(_tiled_output(unit.output), unit.uri) != unit.uri:
            out_uri = _tiled_output(unit.output)
            row.update(status="failed", reason=(
                f"tiled: its output {out_uri} (a tiled job writes .tif) would replace the output "
                f"of {taken[out_uri]}; name outputs with {{suffix}} (--name)"))
        else:
            out_uri = _tiled_output(unit.output)
            taken[out_uri] = unit.uri
            fs, path = storage.get_fs(out_uri, so)
            if storage._is_local(fs):  # side files (spills, tile stores) go beside the output
                os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            try:
                tiled = run_tiled(pipeline, unit.uri, out_uri, memory=memory, engine=engine,
                                  manifest=_TileRowsOnly(writer, unit.uri), resume=resume,
                                  storage_options=dict(so) or None, progress=False)
            except DecodeError as e:  # the input, read by region, is not a usable image
                row.update(status="invalid", reason=_reason("tiled", e))
            except Exception as e:
                row.update(status="failed", reason=_reason("tiled", e))
            else:
                row.update(status=tiled.status, reason=tiled.reason, tiled=True,
                           tiles=tiled.tiles, out_width=tiled.out_width or None,
                           out_height=tiled.out_height or None, t_total=tiled.seconds,
                           **tiled.measures, **({"icc": tiled.icc} if tiled.icc else {}))
                if tiled.status == "ok":
                    with contextlib.suppress(OSError):
                        row["output_bytes"] = int(fs.info(path).get("size") or 0)
                    row["output"] = out_uri
        writer.append(row)
        if progress is not None:
            progress.advance(status=row["status"])


def run(
    pipeline: Any,
    input: str,
    output: str | None,
    *,
    manifest: str | None = None,
    engine: Any = "local",
    workers: int | None = None,
    resume: bool = False,
    format: str | None = None,
    quality: int | None = None,
    limit: int | None = None,
    overwrite: bool = False,
    recursive: bool = True,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    label_from: str | None = None,
    timeout: float | None = None,
    storage_options: Mapping[str, Any] | None = None,
    tile_threshold: int | None = 64_000_000,
    memory: Any = None,
    progress: bool = True,
    report: bool = True,
    name_template: str = DEFAULT_NAME_TEMPLATE,
    max_pixels: int | None = None,
    batch_size: int | None = None,
    manifest_field: str = "--manifest",
    planes: bool = True,
) -> JobSummary:
    """Run ``pipeline`` over every image of ``input``, writing outputs under ``output``.

    Parameters
    ----------
    pipeline : Pipeline, str, dict or list
        The pipeline, or a YAML/JSON file (path or URL) holding it.
    input : str
        A folder, file or glob URL (any fsspec URL), or a ``.parquet`` scan manifest.
    output : str or None
        Output folder URL; ``None`` runs a measure-only job (no images written).
    manifest : str, optional
        Manifest URL (default ``OUTPUT/manifest.parquet``; required when ``output`` is None).
    engine : str or Engine
        ``"local"``, ``"dask[=ADDRESS]"``, ``"spark[=MASTER]"`` or an open engine (left open).
    workers : int, optional
        Worker processes when the engine is created here.
    resume : bool
        Process only the inputs without an ``ok`` row in the manifest.
    format, quality : optional
        Output format (jpg, png, tif, webp; default: each input's) and JPEG/WebP quality.
    limit : int, optional
        Process only the first ``limit`` inputs (in URI order).
    overwrite : bool
        Replace the outputs and manifest of an earlier run.
    recursive, include, exclude : optional
        Listing options (see :func:`pixelmill.storage.list_files`).
    label_from : {"parent", "partition"}, optional
        Add a ``label`` column from each input's path.
    timeout : float, optional
        Seconds one input may take; past it the input's worker is killed and its row failed.
    storage_options : dict, optional
        fsspec options for the input, output and manifest URLs.
    tile_threshold : int, optional
        Inputs with more pixels go to :func:`pixelmill.tiled.run_tiled` (None: never).
    memory : optional
        Memory budget passed to the tiled runner.
    progress, report : bool
        Draw a progress bar; write ``report.html`` beside the manifest at the end.
    name_template : str
        Output naming template (see :func:`pixelmill.jobs.render_name`).
    max_pixels : int, optional
        Pixel limit for decoding (default: the codec's).
    batch_size : int, optional
        Units per engine task (default: chosen by the engine).
    manifest_field : str
        How messages name the manifest (``--out`` for the learn commands).
    planes : bool
        Let JPEG → JPEG jobs of area resizes and gaussians run on each 4:2:0 JPEG's Y/Cb/Cr
        planes, as JPEG stores them (no colour conversion either way; the manifest's
        ``decode_planes`` column marks those rows); False decodes every JPEG to RGB.

    Returns
    -------
    JobSummary
    """
    started = time.perf_counter()
    pipe = load_pipeline(pipeline, storage_options)  # an s3:// pipeline: same options
    fmt = check_format(format, quality)
    check_timeout(timeout)
    if _runs_here(engine):  # a cuda step this machine cannot run fails now, not every image
        from pixelmill.ops.sr import check_local_devices

        check_local_devices(pipe)
    if tile_threshold is not None and (isinstance(tile_threshold, bool)
                                       or not isinstance(tile_threshold, numbers.Real)
                                       or not tile_threshold >= 1):
        raise InvalidParameterError(
            f"--tile-threshold: expected a number of pixels >= 1, got {tile_threshold!r}",
            field="tile_threshold")
    if resume and overwrite:
        raise UsageError("--resume and --overwrite exclude each other")
    if output is None and pipe.steps and not any(
            s.spec.output in ("measures", "vector") for s in pipe.steps):
        raise UsageError("output: a measure-only job (no OUTPUT) needs measurement or vector ops")
    so = dict(storage_options or {})
    # a model a step names: absolute, loaded once here (a broken one fails now), and hashed
    # into the fingerprint with --label-from, so a resume cannot mix two models or labellings
    pipe = resolve_models(pipe, so)
    records = model_records(pipe, so)
    fingerprint = job_fingerprint(pipe, label_from, records)
    # workers (on a cluster: in other folders) write outputs: no relative local paths
    output = None if output is None else storage.absolute(output)
    if output is not None and storage.same_location(str(input), output):
        raise UsageError(
            f"OUTPUT: {output} is the INPUT folder itself; write the outputs to another folder "
            "(outputs are never read back as input, so nothing would be processed)")
    manifest = None if manifest is None else storage.absolute(manifest)
    manifest_uri = manifest or default_manifest_uri(output)
    units = plan_units(input, output, format=fmt, name_template=name_template,
                       recursive=recursive, include=include, exclude=exclude,
                       label_from=label_from, limit=limit, storage_options=so)

    check_quality_applies(units, quality)
    in_process = _memory_job(engine, units, output, timeout)
    if output is not None:
        _check_output_formats(pipe, units, fmt)

    # -- an earlier run at the same place? -------------------------------------------------
    if manifest_uri in {u.uri for u in units}:  # --overwrite would replace that input
        raise UsageError(f"{manifest_field}: {manifest_uri} is one of the inputs; keep it "
                         "elsewhere")
    check_outside_models(pipe, output, "OUTPUT")
    check_outside_models(pipe, manifest_uri, manifest_field)
    if storage.same_location(str(input), manifest_uri):  # a scan manifest given as INPUT
        raise UsageError(f"{manifest_field}: {manifest_uri} is the INPUT (a manifest listing "
                         "the inputs); write it elsewhere")
    earlier = earlier_run(manifest_uri, so)
    if earlier == "journal" and not resume and not overwrite:
        raise journal_in_the_way(manifest_uri, so)
    if not overwrite and not earlier and output is not None:
        # outputs with no manifest (nor journal) beside them: files a user made, or whose
        # manifest was removed; not this job's to replace, nor to take over with --resume
        # (a run whose manifest is on an object store writes it when it ends or is
        # interrupted: outputs without it are not a run's to take over, --resume or not)
        clash = _existing_outputs(units, output, so)[:3]
        if clash:
            raise foreign_output(clash[0], manifest_uri)
    if earlier == "manifest" and not resume and not overwrite:
        raise UsageError(
            f"{manifest_uri} already exists (results of an earlier run); use --resume to "
            "continue that run or --overwrite to replace it")
    for where, name in ((output, "OUTPUT"), (manifest_uri, manifest_field)):
        if where is not None:  # a missing bucket fails now, not after every input is done
            storage.check_writable(where, so, field=name)

    # -- run -------------------------------------------------------------------------------
    from pixelmill.engines import InlineEngine, get_engine

    own_engine = isinstance(engine, str) or engine is None or in_process
    if in_process:  # a memory:// store lives in this process: workers would see an empty one
        eng = InlineEngine()
    else:  # nothing written yet
        eng = get_engine(engine or "local", workers) if own_engine else engine
    # the writer locks the manifest (a second job on it is refused) before the earlier rows
    # are read, outputs are touched or temporaries swept: from here on this job owns them
    try:
        writer = ManifestWriter(manifest_uri, keep_existing=resume, storage_options=so)
    except BaseException:
        if own_engine:
            eng.close()
        raise
    todo: list[WorkUnit] = []
    output_watch = _FolderWatch(output)  # OUTPUT removed while the job runs: see the end
    try:
        try:
            done: set[str] = set()
            if resume:
                done = _resumable(writer.earlier_table, units, fingerprint, quality,
                                  manifest_uri)
                # a folder that could not be listed then and can now: its files are inputs
                # of their own this time, so its failed row no longer stands for them
                planned = {u.key for u in units}
                writer.forget(r.get("key") for r in select_rows(
                                  writer.earlier_table, ("key", "reason"), status="failed")
                              if str(r.get("reason") or "").startswith(storage.UNLISTED_REASON)
                              and r.get("key") not in planned)
            elif overwrite:  # an interrupted --overwrite must not resume from the replaced run
                _remove_manifest(manifest_uri, so)
            if output is not None and (resume or overwrite):
                _remove_stale_temporaries(output, so)
            if resume or overwrite:  # a --manifest outside OUTPUT (or a measure-only job's)
                _remove_manifest_temporaries(manifest_uri, so)
            todo = [u for u in units if u.key not in done]

            if records:  # which models made the vectors (models and indexes check them later)
                writer.metadata["pixelmill.models"] = json.dumps(records)
            writer.metadata.update({
                "pixelmill.pipeline": pipe.to_json(), "pixelmill.fingerprint": fingerprint,
                "pixelmill.input": str(input), "pixelmill.output": str(output),
                "pixelmill.engine": getattr(eng, "name", str(engine)),
                "pixelmill.workers": str(getattr(eng, "workers", workers))})
            whole_memory = None
            if tile_threshold:  # inputs above it that cannot be tiled must fit this whole
                from pixelmill.tiled._plan import default_memory, parse_memory

                whole_memory = parse_memory(memory) or default_memory()
            spec = JobSpec(pipe, quality=quality, storage_options=so, max_pixels=max_pixels,
                           tile_threshold=tile_threshold, whole_memory=whole_memory,
                           planes=bool(planes))
            fn = _UnitFunction(spec, fingerprint)
            with _open_progress(len(todo), progress) as bar:
                for unit in todo:  # unlisted folders: failed rows, written here
                    if unit.error is not None:
                        writer.append(_unit_error_row(unit, fingerprint))
                        if bar is not None:
                            bar.advance(status="failed")
                deferred = execute(eng, fn, [u for u in todo if u.error is None], writer,
                                   timeout=timeout, batch_size=batch_size, progress=bar)
                if deferred:
                    todo_by_key = {u.key: u for u in todo}
                    # in plan order, not completion order: which of two inputs that would both
                    # write NAME.tif gets it must not depend on timing (nor differ on resume)
                    deferred.sort(key=lambda r: todo_by_key[r["key"]].index)
                    taken = {u.output: u.uri for u in units if u.output}
                    taken.update({r["output"]: r["uri"] for r in select_rows(
                                      writer.earlier_table, ("key", "uri", "output"), status="ok")
                                  if r.get("output") and r.get("uri")
                                  and r.get("key") in done})  # tiled outputs of earlier runs
                    _run_tiled_rows(pipe, deferred, todo_by_key, eng, writer, resume=resume,
                                    memory=memory, so=so, progress=bar, taken=taken)
        finally:
            if own_engine:
                eng.close()
        if output is not None:  # a worker killed mid-write (crash, timeout) left its temporary
            _remove_stale_temporaries(output, so)
            _fail_removed_outputs(writer, output, {u.key for u in todo}, output_watch,
                                  progress)
        elapsed = time.perf_counter() - started
        writer.metadata.update({"pixelmill.elapsed": f"{elapsed:.3f}",
                                "pixelmill.processed": str(len(todo)),
                                "pixelmill.finished": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                    time.gmtime())})
        table = writer.close(columns=("key", "status", "reason"))  # what the summary reads
    except BaseException as e:
        output_watch.close()
        writer.abandon()  # the journal keeps every finished row for --resume
        if isinstance(e, KeyboardInterrupt) and progress and writer.appended:
            where = (f"the journal beside {manifest_uri}" if keeps_journal(manifest_uri, so)
                     else manifest_uri)
            print(f"interrupted after {writer.appended} of {len(todo)} inputs; their rows are "
                  f"kept in {where}: run again with --resume to finish", file=sys.stderr,
                  flush=True)
        elif isinstance(e, KeyboardInterrupt) and progress:
            print(f"interrupted before any of the {len(todo)} inputs was done"
                  + ("; the earlier run's rows are kept: run again with --resume"
                     if resume and writer.earlier_rows else ""), file=sys.stderr, flush=True)
        raise
    # counted from three columns, not from the whole table as row dicts (gigabytes for a
    # collection of millions, held while the report reads the manifest again)
    keys = {u.key for u in units}
    counts = dict.fromkeys(("ok", "invalid", "failed"), 0)
    reasons: dict[str, str] = {}
    for key, status, reason in zip(*(column(table, c) for c in ("key", "status", "reason")),
                                   strict=True):
        if key not in keys:
            continue
        if status in counts:
            counts[status] += 1
        if status != "ok":
            reasons[key] = reason or ""
    summary = JobSummary(
        total=len(units), processed=len(todo), ok=counts["ok"], invalid=counts["invalid"],
        failed=counts["failed"], elapsed=elapsed, manifest=manifest_uri, output=output,
        reasons=reasons)
    del table, writer  # every row: not needed while the report is written
    with contextlib.suppress(Exception):  # Arrow's allocator keeps freed memory cached: back
        pa.default_memory_pool().release_unused()  # to the system, not under the report
    if report:
        from pixelmill.report import default_report_uri, write_report

        summary.report = default_report_uri(manifest_uri)
        try:
            write_report(manifest_uri, summary.report, storage_options=so)
        except Exception as e:  # the job is done and its manifest written: the page is extra
            print(f"warning: report not written ({type(e).__name__}: {e}); "
                  f"`pixelmill report {manifest_uri}` tries again", file=sys.stderr, flush=True)
            summary.report = None
    return summary


class _FolderWatch:
    """Whether a local folder that existed when the job began was removed (or replaced) since:
    it is held open, so its inode cannot be reused by a folder made again at its path."""

    def __init__(self, folder: str | None) -> None:
        self.folder, self._fd = folder, None
        if folder is not None and "://" not in folder and hasattr(os, "O_DIRECTORY"):
            with contextlib.suppress(OSError):
                self._fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)

    def removed(self) -> bool:
        if self._fd is None:
            return False
        try:
            held = os.fstat(self._fd)
            return held.st_nlink == 0 or not os.path.samestat(held, os.stat(self.folder))
        except OSError:
            return True

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:  # pragma: no cover - closed by run()
        self.close()


#: the reason of an ``ok`` row whose output is gone by the end of the job
REMOVED_REASON = ("write: its output {output} was removed after it was written (OUTPUT, or a "
                  "folder of it, was deleted while the job ran); run again with --resume to "
                  "write it again")


def _fail_removed_outputs(writer: ManifestWriter, output: str, keys: set[str],
                          watch: _FolderWatch, progress: bool) -> None:
    """Turn the ``ok`` rows whose local output no longer exists into ``failed`` rows.

    OUTPUT (or a folder of it) deleted while the job ran took the outputs written before with
    it, and the journal beside them: their ``ok`` rows said done, the job ended 0 and a
    ``--resume`` skipped them, so the outputs were never written again. The outputs of the
    inputs this run processed (``keys``) are looked at (one ``stat`` each); those of an earlier
    run's rows too when OUTPUT itself was removed since the job began (``watch``). Local
    outputs only (an object store's listing would be slow and can lag)."""
    if "://" in output:
        return
    every = watch.removed()
    watch.close()
    gone = []
    for row in iter_rows(writer.table(columns=("key", "uri", "relpath", "label", "status",
                                               "output", "pipeline")),
                         status="ok"):
        out = row.get("output")
        if not out or "://" in out or is_tile_row(row) or not (every or row["key"] in keys):
            continue
        if not os.path.lexists(out):
            gone.append(row)
    for row in gone:
        writer.append({**{k: v for k, v in row.items() if v is not None and k != "output"},
                       "status": "failed", "reason": REMOVED_REASON.format(output=row["output"])})
    if gone and progress:
        print(f"warning: {len(gone)} output{'s were' if len(gone) != 1 else ' was'} removed "
              f"while the job ran (first: {storage.printable(gone[0]['output'])}); "
              "their inputs are failed: run again with --resume to write them again",
              file=sys.stderr, flush=True)


class _UnitFunction:
    """What engines map over the units: :func:`process_unit` plus the row's job columns.

    ``warm_up()`` is called by the local engine in a fresh worker before it begins its first
    batch (and before a ``--timeout`` clock starts): it runs the pipeline once on a small gray
    image, so that the imports and caches of its first real input do not count as that
    input's time."""

    def __init__(self, spec: JobSpec, fingerprint: str) -> None:
        self.spec = spec
        self.fingerprint = fingerprint

    def __call__(self, unit: WorkUnit) -> dict[str, Any]:
        row = process_unit(self.spec, unit)
        row["pipeline"] = self.fingerprint
        if unit.output is not None:
            row["encoding"] = encoding_of(unit.format, self.spec.quality)
        return row

    def warm_up(self) -> None:
        import numpy as np

        from pixelmill import codecs
        from pixelmill.jobs._worker import _prepare_worker

        _prepare_worker()
        with contextlib.suppress(Exception):
            out = self.spec.pipeline.run(np.full((64, 64, 3), 128, np.uint8)).image
            for fmt in ("jpg", "png"):
                with contextlib.suppress(Exception):
                    codecs.encode(out, fmt)
            if self.spec.planes and codecs.planes_available():  # the planes route's imports
                plane = np.full((64, 64), 128, np.uint8)
                with contextlib.suppress(Exception):
                    codecs.encode_planes(plane, plane[:32, :32], plane[:32, :32])


def encoding_of(fmt: str | None, quality: int | None) -> str:
    """How an output is encoded, as the manifest's ``encoding`` column says it (``jpg q=90``,
    ``png``): a resumed job must encode the rest of its outputs the same way."""
    fmt = fmt or "png"
    if fmt == "jpg":  # the codec's default quality is 95 (pixelmill.codecs.encode)
        return f"jpg q={quality or 95}"
    if fmt == "webp":
        return "webp lossless" if quality is None else f"webp q={quality}"
    return fmt


def _remove_manifest(uri: str, so: Mapping[str, Any]) -> None:
    """Remove the Parquet file of an earlier run (``--overwrite``): were this run killed, a
    ``--resume`` would otherwise count that run's rows as done."""
    fs, path = storage.get_fs(uri, so)
    with contextlib.suppress(FileNotFoundError):
        if fs.exists(path):
            fs.rm(path)


def job_fingerprint(pipe: Pipeline, label_from: str | None,
                    records: Mapping[str, Mapping[str, str]] | None = None) -> str:
    """The ``pipeline`` column of a job's rows: the pipeline's fingerprint, mixed with the
    content hashes of the models its steps name (``records``, from
    :func:`~pixelmill.learn.references.model_records`) and ``--label-from`` when there are any."""
    extra = [r["sha256"] for r in (records or {}).values()]
    if label_from:
        extra.append(f"label_from={label_from}")
    if not extra:
        return pipe.fingerprint
    return hashlib.sha256("\0".join([pipe.fingerprint, *extra]).encode()).hexdigest()[:16]


#: what :func:`_resumable` reads of the earlier run's rows
_RESUME_COLUMNS = ("key", "uri", "status", "pipeline", "output", "encoding", "tiled")


def _resumable(rows: pa.Table | Sequence[Mapping[str, Any]], units: Sequence[WorkUnit], fingerprint: str,
               quality: int | None, manifest_uri: str) -> set[str]:
    """Keys of the inputs an earlier run finished (``ok`` rows), after checking that this run
    would have made the same outputs: same pipeline, same output names (``--format``,
    ``--name``, OUTPUT) and same encoding (``--quality``). A resume with other settings would
    leave a silent mix of both; it is refused."""
    if isinstance(rows, pa.Table):  # read a batch at a time: no dict per row of millions
        table = rows

        def ok_rows() -> Iterator[Mapping[str, Any]]:
            return iter_rows(table, _RESUME_COLUMNS, status="ok")
    else:
        listed = [r for r in rows if r.get("status") == "ok"]

        def ok_rows() -> Iterator[Mapping[str, Any]]:
            return iter(listed)
    # tile rows carry the tiled job's own pipeline fingerprint, checked by that job
    fps, keys = set(), set()
    for r in ok_rows():
        keys.add(r["key"])
        if not is_tile_row(r):
            fps.add(r.get("pipeline"))
    fps -= {None}
    if fps and fps != {fingerprint}:
        raise UsageError(
            f"{manifest_uri}: written by a different pipeline, model or --label-from "
            f"(fingerprint {', '.join(sorted(fps))}, this run's is {fingerprint}); resume "
            "with the earlier run's, or use --overwrite")
    by_key = {u.key: u for u in units}
    for row in ok_rows():
        unit = by_key.get(row.get("key"))
        if unit is None or unit.output is None or "pipeline" not in row:
            continue
        was = row.get("output")
        if was is not None and was not in (unit.output, _tiled_output(unit.output)):
            raise UsageError(
                f"{manifest_uri}: the earlier run wrote {unit.uri} to {was}, this one would "
                f"write it to {unit.output} (another --format, --name or OUTPUT); resume with "
                "the earlier run's settings, or use --overwrite")
        enc = row.get("encoding")
        if enc is not None and not row.get("tiled") and enc != encoding_of(unit.format, quality):
            raise UsageError(
                f"{manifest_uri}: the earlier run encoded its outputs as {enc!r}, this one "
                f"would encode them as {encoding_of(unit.format, quality)!r} (another --format "
                "or --quality); resume with the earlier run's settings, or use --overwrite")
    return keys
