"""Feature extraction as a batch job, and feature tables read back as arrays.

:func:`extract` runs a pipeline of vector ops (``pixelmill.ops.features``) over a collection
with :func:`pixelmill.jobs.run` on any engine — one manifest row per image with its
``vec_<op>`` columns and ``label`` — and adds the stable ``split`` column
(:mod:`pixelmill.learn.split`). :func:`load_features` reads such a table into a
:class:`FeatureSet` (the ok rows, one matrix of the chosen vector columns side by side).
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pixelmill import storage
from pixelmill.errors import InvalidParameterError, UsageError
from pixelmill.learn.split import assign_split, parse_ratios, split_settings

__all__ = ["SPLIT_KEYS", "FeatureSet", "extract", "load_features", "read_table",
           "table_split_settings", "write_table"]

#: what the split hash reads: the path relative to the collection root, the full URI, or the
#: file's SHA-256 (``content``: renames and moves keep the split, duplicates share one split)
SPLIT_KEYS = ("relpath", "uri", "content")
CONTENT_COLUMN = "content_sha256"
VECTOR_PREFIX = "vec_"
SPLIT_METADATA = b"pixelmill.split"  #: the table's split settings (JSON), set by add_split


def read_table(uri: str, storage_options: Mapping[str, Any] | None = None) -> pa.Table:
    """A Parquet file at any URL."""
    try:
        return storage.read_parquet(uri, storage_options)
    except (OSError, FileNotFoundError) as e:
        raise UsageError(f"{uri}: cannot read the feature table: {e}") from e
    except UsageError as e:
        raise UsageError(f"{e} (a feature table was expected)") from e


def write_table(uri: str, table: pa.Table, storage_options: Mapping[str, Any] | None = None):
    """Write a Parquet file atomically."""
    sink = io.BytesIO()
    pq.write_table(table, sink)
    storage.write_atomic(uri, sink.getvalue(), storage_options)


def _split_keys(table: pa.Table, split_by: str) -> list[str]:
    if split_by not in SPLIT_KEYS:
        raise InvalidParameterError(f"split_by: expected one of {SPLIT_KEYS}, got {split_by!r}",
                                    field="split_by")
    if split_by == "content":
        if CONTENT_COLUMN not in table.column_names:
            raise UsageError(f"split_by=content needs a {CONTENT_COLUMN} column")
        column = CONTENT_COLUMN
    else:
        column = split_by if split_by in table.column_names else "key"
    return [str(v) for v in table.column(column).to_pylist()]


def file_sha256(uri: str, storage_options: Mapping[str, Any] | None = None) -> str | None:
    """SHA-256 (hex) of a file's bytes, or None when it cannot be read."""
    try:
        return hashlib.sha256(storage.read_bytes(uri, storage_options)).hexdigest()
    except OSError:
        return None


def add_content_hashes(table: pa.Table, engine: Any = "local", workers: int | None = None,
                       storage_options: Mapping[str, Any] | None = None) -> pa.Table:
    """The table with a ``content_sha256`` column, hashed on ``engine`` (one read per file)."""
    from pixelmill.engines import get_engine

    uris = [str(u) for u in table.column("uri").to_pylist()]
    hashes: list[str | None] = [None] * len(uris)
    own = isinstance(engine, str) or engine is None
    eng = get_engine(engine or "local", workers) if own else engine
    try:
        fn = functools.partial(file_sha256, storage_options=dict(storage_options or {}) or None)
        for i, digest in eng.map(fn, uris):
            hashes[i] = digest if isinstance(digest, str) else None
    finally:
        if own:
            eng.close()
    if CONTENT_COLUMN in table.column_names:
        table = table.drop_columns([CONTENT_COLUMN])
    return table.append_column(CONTENT_COLUMN, pa.array(hashes, pa.string()))


def add_split(table: pa.Table, ratios: Any = None, *, split_by: str = "relpath",
              salt: str = "") -> pa.Table:
    """The table with a ``split`` column (replaced when present) and its settings as metadata."""
    fractions = parse_ratios(ratios)
    splits = assign_split(_split_keys(table, split_by), fractions, salt)
    if "split" in table.column_names:
        table = table.drop_columns(["split"])
    table = table.append_column("split", pa.array(splits, pa.string()))
    meta = dict(table.schema.metadata or {})
    meta[SPLIT_METADATA] = json.dumps(
        {"ratios": list(fractions), "split_by": split_by, "salt": salt}).encode()
    return table.replace_schema_metadata(meta)


def table_split_settings(table: pa.Table, source: str | None = None) -> dict[str, Any] | None:
    """The split settings a feature table's ``split`` column was made with (its metadata, with
    ``source="table"`` and ``uri=source`` added), the defaults for a table without a ``split``
    column (its split is computed on reading), or None when a split column has no record
    (tables written before the settings were recorded, or by other tools)."""
    if "split" not in table.column_names:
        return split_settings(source="default", uri=source)
    raw = (table.schema.metadata or {}).get(SPLIT_METADATA)
    if not raw:
        return None
    try:
        recorded = json.loads(raw)
        if not isinstance(recorded, dict):
            return None
        return split_settings(recorded.get("ratios"), recorded.get("split_by", "relpath"),
                              recorded.get("salt", ""), source="table", uri=source)
    except (ValueError, InvalidParameterError):
        return None


def extract(
    pipeline: Any,
    input: str,
    out: str,
    *,
    label_from: str | None = None,
    ratios: Any = None,
    split_by: str = "relpath",
    salt: str = "",
    engine: Any = "local",
    workers: int | None = None,
    storage_options: Mapping[str, Any] | None = None,
    progress: bool = False,
    **job_options: Any,
):
    """Extract feature vectors of every image of ``input`` into the Parquet table ``out``.

    Parameters
    ----------
    pipeline : Pipeline, str, dict or list
        A pipeline holding at least one vector op (image ops before it prepare the image).
    input : str
        Folder, file, glob URL or scan manifest (as :func:`pixelmill.jobs.run`).
    out : str
        The feature table's URL (``.parquet``).
    label_from : {"parent", "partition"}, optional
        Where labels come from (the parent folder's name, or ``label=...`` path parts).
    ratios : str or sequence, optional
        train:val:test proportions (default 7:1:2).
    split_by : {"relpath", "uri", "content"}
        What the split hash reads (``content``: each file's SHA-256, one more read per file).
    salt : str
        Mixed into the hash, for a different (still stable) split.
    engine, workers, storage_options, progress
        As :func:`pixelmill.jobs.run`; ``job_options`` are passed on to it too.

    Returns
    -------
    JobSummary
        The job's summary (``summary.manifest`` is ``out``).
    """
    from pixelmill.jobs import run
    from pixelmill.pipeline import load_pipeline

    pipe = load_pipeline(pipeline, storage_options)  # an s3:// pipeline: same options
    if not any(step.spec.output == "vector" for step in pipe.steps):
        raise UsageError("pipeline: feature extraction needs at least one vector op "
                         "(e.g. color_histogram, hog, lbp_histogram; see 'pixelmill ops')")
    parse_ratios(ratios)
    if split_by not in SPLIT_KEYS:
        raise InvalidParameterError(f"--split-by: expected one of {SPLIT_KEYS}, got {split_by!r}",
                                    field="split_by")
    job_options.setdefault("report", False)
    job_options.setdefault("manifest_field", "--out")
    own = split_by == "content" and (isinstance(engine, str) or engine is None)
    if own:  # one engine for the job and the hashing pass
        from pixelmill.engines import get_engine

        engine = get_engine(engine or "local", workers)
    try:
        summary = run(pipe, input, None, manifest=out, label_from=label_from, engine=engine,
                      workers=workers, storage_options=storage_options, progress=progress,
                      **job_options)
        table = read_table(out, storage_options)
        if split_by == "content":
            table = add_content_hashes(table, engine, workers, storage_options)
    finally:
        if own:
            engine.close()
    table = add_split(table, ratios, split_by=split_by, salt=salt)
    write_table(out, table, storage_options)
    return summary


@dataclass
class FeatureSet:
    """The ok rows of a feature table as arrays."""

    keys: list[str]
    uris: list[str]
    labels: np.ndarray | None  #: str labels (None where a row has none), or None: no column
    split: np.ndarray  #: "train" / "val" / "test" per row
    X: np.ndarray  #: float32, rows × sum of the chosen vector lengths
    columns: list[str]  #: the vector columns, in the order they fill X
    pipeline: dict | None  #: the extraction pipeline (from the table's metadata)
    models: dict | None = None  #: the models its steps named, hashed (``pixelmill.models``)
    #: the settings its split was made with (:func:`table_split_settings`; None: unrecorded)
    split_settings: dict | None = None

    @property
    def labelled(self) -> np.ndarray:
        """Rows with a label (an image directly in the folder that ``--label-from parent``
        scanned has none; it can be neither trained on nor scored)."""
        if self.labels is None:
            return np.zeros(len(self.keys), bool)
        return np.array([v is not None for v in self.labels], bool)

    def subset(self, split: str) -> tuple[np.ndarray, np.ndarray | None]:
        """X and labels of the ``split`` rows (only the labelled ones when there are labels)."""
        mask = self.split == split
        if self.labels is not None:
            mask &= self.labelled
        return self.X[mask], (None if self.labels is None else self.labels[mask])

    def __len__(self) -> int:
        return len(self.keys)


def vector_columns(table: pa.Table) -> list[str]:
    return [c for c in table.column_names if c.startswith(VECTOR_PREFIX)]


def _matrix(column: pa.ChunkedArray, name: str) -> np.ndarray:
    array = column.combine_chunks()
    if array.null_count:
        raise UsageError(f"{name}: {array.null_count} ok rows have no vector")
    offsets = np.asarray(array.offsets)
    lengths = np.diff(offsets)
    if len(lengths) and (lengths != lengths[0]).any():
        raise UsageError(
            f"{name}: vectors of different lengths {sorted(set(lengths.tolist()))[:5]} "
            "(images of different sizes? give the op a fixed size, e.g. hog size=[64, 64])")
    values = np.asarray(array.flatten(), dtype=np.float32)
    return values.reshape(len(lengths), int(lengths[0]) if len(lengths) else 0)


def table_to_features(table: pa.Table, columns: Sequence[str] | None = None,
                      source: str = "features") -> FeatureSet:
    """Arrays of a feature table (see :func:`load_features`)."""
    if "status" in table.column_names:
        ok = table.filter(pa.compute.equal(table.column("status"), "ok"))
        if table.num_rows and not ok.num_rows:  # not "no vector columns; extract first"
            reasons = (table.column("reason").to_pylist() if "reason" in table.column_names
                       else [])
            first = next((str(r) for r in reasons if r), None)
            raise UsageError(
                f"{source}: none of its {table.num_rows} images was extracted (no ok row"
                + (f"; e.g. {first[:200]}" if first else "") + ")")
        table = ok
    available = vector_columns(table)
    if columns:
        wanted = [c if c.startswith(VECTOR_PREFIX) else VECTOR_PREFIX + c for c in columns]
        missing = [c for c in wanted if c not in table.column_names]
        if missing:
            raise InvalidParameterError(
                f"--features: {source} has no column {missing[0]!r} (has: "
                f"{', '.join(available) or 'no vector columns'})", field="features")
    else:
        wanted = available
    if not wanted:
        raise UsageError(f"{source}: no vector columns (vec_*); extract features first")
    X = (np.concatenate([_matrix(table.column(c), c) for c in wanted], axis=1)
         if table.num_rows else np.zeros((0, 0), np.float32))
    names = table.column_names
    keys = [str(k) for k in table.column("key").to_pylist()] if "key" in names else [
        str(i) for i in range(table.num_rows)]
    bad = np.flatnonzero(~np.isfinite(X).all(axis=1)) if X.size else np.zeros(0, np.int64)
    if len(bad):  # one NaN row would poison a scaler's mean and every distance of an index
        shown = ", ".join(keys[i] for i in bad[:3]) + (", ..." if len(bad) > 3 else "")
        raise UsageError(
            f"{source}: {len(bad)} ok row{'s' if len(bad) > 1 else ''} of {', '.join(wanted)} "
            f"hold NaN or infinite values ({shown}); leave those images out (extract "
            "--exclude) or fix them")
    uris = [str(u) for u in table.column("uri").to_pylist()] if "uri" in names else keys
    labels = (np.array([None if v is None else str(v) for v in table.column("label").to_pylist()],
                       dtype=object) if "label" in names else None)
    if "split" in names:
        split = np.array(table.column("split").to_pylist(), dtype=object)
    else:
        split = np.array(assign_split(_split_keys(table, "relpath")), dtype=object)
    meta = table.schema.metadata or {}
    raw = meta.get(b"pixelmill.pipeline")
    pipeline = json.loads(raw) if raw else None
    raw = meta.get(b"pixelmill.models")
    models = json.loads(raw) if raw else None
    return FeatureSet(keys, uris, labels, split, X, wanted, pipeline, models,
                      table_split_settings(table, source))


def load_features(uri: str, columns: Sequence[str] | None = None,
                  storage_options: Mapping[str, Any] | None = None) -> FeatureSet:
    """Read a feature table: ok rows only, the chosen ``vec_`` columns side by side.

    Parameters
    ----------
    uri : str
        The Parquet table written by :func:`extract` (or any job manifest with vector columns).
    columns : sequence of str, optional
        Vector columns to use (``hog`` or ``vec_hog``); default every ``vec_`` column.
    storage_options : mapping, optional
        fsspec options.

    Returns
    -------
    FeatureSet
    """
    return table_to_features(read_table(uri, storage_options), columns, uri)
