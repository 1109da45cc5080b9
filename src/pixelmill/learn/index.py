"""Nearest-neighbour retrieval over feature vectors: exact (NumPy) or approximate (HNSW).

Vectors are standardised with the collection's per-dimension mean and std (``normalize``), then
compared by cosine distance (``1 - cos``, default) or squared Euclidean distance. Up to
``exact_threshold`` vectors (default 50,000) search is exact — one matrix product per query
batch; beyond it an HNSW graph (hnswlib) answers approximately (``kind`` forces either).

An index directory holds ``index.json`` (settings, feature pipeline and columns),
``vectors.npy`` (float32, as searched), ``rows.parquet`` (key, uri, label, split per vector)
and ``hnsw.bin`` for the approximate kind: a graph of the distinct vectors, each copy of a
duplicate returned with it (duplicates trap HNSW searches). Nothing is pickled.

Evaluation (:func:`evaluate_index`) — with labels, each query's *relevant* items are the
database items with its label:

* ``recall@k``: the fraction of queries with at least one relevant item among their k nearest
  (the definition of deep metric learning, e.g. Song et al. 2016 — not the fraction of all
  relevant items retrieved);
* ``precision@k``: the mean over queries of (relevant items among the k nearest) / k — k
  also when the database holds fewer than k items (the standard definition: a query cannot
  score more by there being fewer items to return);
* ``mAP@k``: the mean over queries of AP@k = Σ_{i≤k} P@i·rel_i / min(k, R), R = relevant items.

Queries are the ``test`` rows searched against the other rows when the table has a split;
otherwise every row is a query against all others (itself excluded).
"""

from __future__ import annotations

import functools
import io
import json
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pixelmill import storage
from pixelmill.errors import InvalidParameterError, UsageError

__all__ = ["KINDS", "METRICS", "VectorIndex", "build_index", "evaluate_index", "load_index",
           "retrieval_metrics"]

FORMAT = "pixelmill-index/1"
KINDS = ("auto", "exact", "hnsw")
METRICS = ("cosine", "l2")
EXACT_THRESHOLD = 50_000


def _check(kind: str, metric: str) -> None:
    if kind not in KINDS:
        raise InvalidParameterError(f"--kind: expected one of {KINDS}, got {kind!r}", field="kind")
    if metric not in METRICS:
        raise InvalidParameterError(f"--metric: expected one of {METRICS}, got {metric!r}",
                                    field="metric")


@dataclass
class VectorIndex:
    """Searchable vectors with the rows they came from."""

    vectors: np.ndarray
    rows: list[dict[str, Any]]
    metric: str = "cosine"
    kind: str = "exact"
    mean: np.ndarray | None = None
    scale: np.ndarray | None = None
    columns: list[str] = field(default_factory=list)
    pipeline: dict | None = None
    hnsw: Any = None
    ef: int = 128
    models: dict | None = None  #: the models the pipeline's steps named, hashed
    #: HNSW over distinct vectors: (order, starts), the rows of graph item g being
    #: ``order[starts[g]:starts[g + 1]]``; None when graph items are rows (no duplicates)
    groups: tuple[np.ndarray, np.ndarray] | None = None

    @functools.cached_property
    def _query_pipeline(self) -> Any:
        from pixelmill.learn.references import check_model_records
        from pixelmill.pipeline import Pipeline

        # a CNN the stored vectors came from, retrained since, would give incomparable ones
        check_model_records(self.models, "this index")
        return Pipeline.from_dict(self.pipeline)

    def _check_queries(self, X: np.ndarray, what: str) -> np.ndarray:
        X = np.atleast_2d(np.asarray(X, np.float32))
        dim = self.vectors.shape[1]
        if X.ndim != 2 or X.shape[1] != dim:
            raise UsageError(f"{what} of {X.shape[-1]} values, the index holds vectors of {dim} "
                             "(query with the index's own features)")
        if not np.isfinite(X).all():
            raise UsageError(f"{what} hold NaN or infinite values (a failed extraction?)")
        return X

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Raw feature rows -> the space the index searches."""
        X = self._check_queries(X, "feature rows")
        if self.mean is not None:
            X = (X - self.mean) / self.scale
        if self.metric == "cosine":
            X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
        return np.ascontiguousarray(X, np.float32)

    def __len__(self) -> int:
        return len(self.vectors)

    def search(self, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """(indices, distances), each queries × k, nearest first; ``queries`` already transformed."""
        k = min(int(k), len(self))
        if k < 1:
            raise InvalidParameterError("-k: expected an integer >= 1", field="k")
        Q = np.ascontiguousarray(self._check_queries(queries, "query vectors"), np.float32)
        if self.metric == "cosine":  # unit length, whatever the caller passed
            Q = Q / np.maximum(np.linalg.norm(Q, axis=1, keepdims=True), 1e-12)
        if self.hnsw is not None:
            items = k if self.groups is None else min(k, len(self.groups[1]) - 1)
            self.hnsw.set_ef(max(self.ef, items))
            labels, dist = self.hnsw.knn_query(Q, k=items)
            idx, dist = _expand(labels.astype(np.int64), dist.astype(np.float32), self.groups,
                                k)
        else:
            idx, dist = _exact_search(self.vectors, Q, k, self.metric)
        return idx, np.maximum(dist, 0.0)  # 1 - cos of a row with itself: -1e-7, not -0.0000

    def query_image(self, image: np.ndarray, k: int = 10) -> list[dict[str, Any]]:
        """The ``k`` nearest rows to an image (its features extracted by the index's pipeline)."""
        if not self.pipeline:
            raise UsageError("this index has no feature pipeline; query it with vectors")
        from pixelmill.errors import UnsuitableImageError

        try:
            result = self._query_pipeline.run(image)
        except UnsuitableImageError as e:  # a property of this one image: a usage error
            if isinstance(e, UsageError):
                raise
            raise UsageError(f"the query image: {e}") from e
        vec = np.concatenate([result.vectors[c[4:]] for c in self.columns])[None]
        if vec.shape[1] != self.vectors.shape[1]:
            raise UsageError(
                f"the query image gives {vec.shape[1]} feature values, the index holds "
                f"{self.vectors.shape[1]} (an image of another size? give the op a fixed size)")
        if not np.isfinite(vec).all():
            raise UsageError("the query image gives NaN or infinite feature values")
        idx, dist = self.search(self.transform(vec), k)
        return [{**self.rows[i], "distance": float(d)}
                for i, d in zip(idx[0], dist[0], strict=True)]

    def save(self, out: str, storage_options: Mapping[str, Any] | None = None) -> str:
        meta = {"format": FORMAT, "kind": self.kind, "metric": self.metric, "n": len(self),
                "dim": int(self.vectors.shape[1]), "columns": self.columns,
                "pipeline": self.pipeline, "ef": self.ef, "models": self.models,
                # the graph holds each distinct vector once (see _distinct); "groups": its
                # items' rows are in groups.npy (not found again by sorting every vector at
                # each load: 40 s for a million 512-d vectors)
                **({"graph": "distinct", "groups": self.groups is not None}
                   if self.hnsw is not None else {}),
                "mean": None if self.mean is None else self.mean.tolist(),
                "scale": None if self.scale is None else self.scale.tolist()}
        buf = io.BytesIO()
        np.save(buf, self.vectors, allow_pickle=False)
        storage.write_atomic(storage.join(out, "vectors.npy"), buf.getvalue(), storage_options)
        sink = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(self.rows), sink)
        storage.write_atomic(storage.join(out, "rows.parquet"), sink.getvalue(), storage_options)
        if self.hnsw is not None and self.groups is not None:
            order, starts = self.groups
            item = np.empty(len(order), np.int64)  # the graph item of each row
            item[order] = np.repeat(np.arange(len(starts) - 1), np.diff(starts))
            buf = io.BytesIO()
            np.save(buf, item, allow_pickle=False)
            storage.write_atomic(storage.join(out, "groups.npy"), buf.getvalue(),
                                 storage_options)
        if self.hnsw is not None:
            with tempfile.TemporaryDirectory() as tmp:
                path = os.path.join(tmp, "hnsw.bin")
                self.hnsw.save_index(path)
                with open(path, "rb") as f:
                    storage.write_atomic(storage.join(out, "hnsw.bin"), f.read(), storage_options)
        storage.write_atomic(storage.join(out, "index.json"),
                             json.dumps(meta).encode(), storage_options)
        return out


def _exact_search(V: np.ndarray, Q: np.ndarray, k: int, metric: str, chunk: int = 512):
    n = len(V)
    out_idx = np.empty((len(Q), k), np.int64)
    out_dist = np.empty((len(Q), k), np.float32)
    norms = None if metric == "cosine" else np.einsum("ij,ij->i", V, V)
    for start in range(0, len(Q), chunk):
        q = Q[start:start + chunk]
        sims = q @ V.T
        if metric == "cosine":
            dist = 1.0 - sims
        else:
            dist = np.einsum("ij,ij->i", q, q)[:, None] - 2.0 * sims + norms[None, :]
        part = np.argpartition(dist, k - 1, axis=1)[:, :k] if k < n else np.tile(np.arange(n),
                                                                                 (len(q), 1))
        pd = np.take_along_axis(dist, part, axis=1)
        order = np.argsort(pd, axis=1, kind="stable")
        out_idx[start:start + len(q)] = np.take_along_axis(part, order, axis=1)
        out_dist[start:start + len(q)] = np.take_along_axis(pd, order, axis=1)
    return out_idx, out_dist


def _distinct(vectors: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
    """The rows of the distinct vectors (first occurrences, in row order) and the groups of
    rows sharing each (None when every vector is distinct).

    HNSW's neighbour selection prunes a candidate when a chosen link is closer to it than
    the node is: exact copies never prune one another, fill each other's links and trap the
    search — with a third of the rows copies of one image (blank frames, say), recall@10 fell
    to 0.6 (L2). The graph gets each distinct vector once; a hit expands to all its copies."""
    _, first, inverse = np.unique(vectors, axis=0, return_index=True, return_inverse=True)
    if len(first) == len(vectors):
        return np.arange(len(vectors)), None
    rank = np.argsort(first)  # unique ids in order of first occurrence
    gid = np.empty_like(rank)
    gid[rank] = np.arange(len(rank))
    gid = gid[np.asarray(inverse).ravel()]
    order = np.argsort(gid, kind="stable")
    starts = np.concatenate([[0], np.cumsum(np.bincount(gid, minlength=len(rank)))])
    return first[rank], (order, starts)


def _expand(items: np.ndarray, dist: np.ndarray, groups, k: int):
    """Graph hits (distinct vectors) -> the k nearest rows, copies in row order."""
    if groups is None:
        return items, dist
    order, starts = groups
    out_idx = np.empty((len(items), k), np.int64)
    out_dist = np.empty((len(items), k), np.float32)
    for q in range(len(items)):
        taken = 0
        for g, d in zip(items[q], dist[q], strict=True):
            rows = order[starts[g]:starts[g + 1]][:k - taken]
            out_idx[q, taken:taken + len(rows)] = rows
            out_dist[q, taken:taken + len(rows)] = d
            taken += len(rows)
            if taken == k:
                break
    return out_idx, out_dist


def _hnsw(vectors: np.ndarray, metric: str, M: int = 16, ef_construction: int = 200,
          threads: int | None = None):
    """(graph, groups): an HNSW graph of the distinct vectors (see :func:`_distinct`)."""
    import hnswlib

    keep, groups = _distinct(vectors)
    index = hnswlib.Index(space="cosine" if metric == "cosine" else "l2", dim=vectors.shape[1])
    index.init_index(max_elements=len(keep), ef_construction=ef_construction, M=M,
                     random_seed=100)
    index.add_items(vectors[keep], np.arange(len(keep)), num_threads=threads or -1)
    return index, groups


def make_index(X: np.ndarray, rows: list[dict[str, Any]], *, metric: str = "cosine",
               kind: str = "auto", normalize: bool = True, columns: Sequence[str] = (),
               pipeline: dict | None = None, exact_threshold: int = EXACT_THRESHOLD,
               ef: int = 128, threads: int | None = None) -> VectorIndex:
    """A :class:`VectorIndex` over raw feature rows ``X``."""
    _check(kind, metric)
    X = np.asarray(X, np.float32)
    if X.ndim != 2 or len(X) == 0:
        raise UsageError("an index needs at least one vector")
    bad = np.flatnonzero(~np.isfinite(X).all(axis=1))
    if len(bad):  # one NaN row would make the mean, and so every distance, NaN
        keys = ", ".join(str((rows[i] or {}).get("key", i)) if i < len(rows) else str(i)
                         for i in bad[:3])
        raise UsageError(f"{len(bad)} of {len(X)} vectors hold NaN or infinite values "
                         f"({keys}); leave those rows out")
    mean = scale = None
    if normalize:
        mean = X.mean(axis=0)
        scale = np.where(X.std(axis=0) > 1e-8, X.std(axis=0), 1.0).astype(np.float32)
    index = VectorIndex(np.empty((0, X.shape[1]), np.float32), rows, metric, "exact", mean,
                        scale, list(columns), pipeline, ef=ef)
    index.vectors = index.transform(X)
    if kind == "hnsw" or (kind == "auto" and len(X) > exact_threshold):
        index.kind = "hnsw"
        index.hnsw, index.groups = _hnsw(index.vectors, metric, threads=threads)
    return index


def build_index(features: str, out: str | None = None, *, columns: Sequence[str] | None = None,
                metric: str = "cosine", kind: str = "auto", normalize: bool = True,
                exact_threshold: int = EXACT_THRESHOLD, threads: int | None = None,
                storage_options: Mapping[str, Any] | None = None) -> VectorIndex:
    """Index the ok rows of a feature table; save it to the directory ``out`` when given.

    Parameters
    ----------
    features : str
        A feature table (:func:`pixelmill.learn.extract`).
    out : str, optional
        Index directory to write.
    columns : sequence of str, optional
        Vector columns to index (default all).
    metric : {"cosine", "l2"}
        Distance.
    kind : {"auto", "exact", "hnsw"}
        Exact search, an HNSW graph, or HNSW beyond ``exact_threshold`` vectors.
    normalize : bool
        Standardise every dimension first.
    exact_threshold : int
        Largest collection searched exactly by ``kind="auto"``.
    threads : int, optional
        Threads for building the graph.
    storage_options : mapping, optional
        fsspec options.

    Returns
    -------
    VectorIndex
    """
    from pixelmill.learn.features import load_features

    _check(kind, metric)
    fs = load_features(features, columns, storage_options)
    rows = [{"key": k, "uri": u, "label": None if fs.labels is None else fs.labels[i],
             "split": str(fs.split[i])} for i, (k, u) in enumerate(zip(fs.keys, fs.uris,
                                                                        strict=True))]
    index = make_index(fs.X, rows, metric=metric, kind=kind, normalize=normalize,
                       columns=fs.columns, pipeline=fs.pipeline, exact_threshold=exact_threshold,
                       threads=threads)
    index.models = fs.models or None
    if out is not None:
        index.save(out, storage_options)
    return index


def _not_an_index(uri: str, name: str, problem: Any) -> UsageError:
    """The usage error of an index directory whose file ``name`` is missing or unusable."""
    return UsageError(f"{uri}: not a pixelmill index ({name}: {problem})")


def _read_part(uri: str, name: str, storage_options: Mapping[str, Any] | None) -> bytes:
    try:
        return storage.read_bytes(storage.join(uri, name), storage_options)
    except OSError as e:  # missing or unreadable: the directory is not a whole index
        raise _not_an_index(uri, name, e) from e


def _check_meta(uri: str, meta: Any) -> dict[str, Any]:
    """``index.json``'s fields, checked before any of them is used."""
    if not isinstance(meta, dict):
        raise _not_an_index(uri, "index.json", f"expected a JSON object, got "
                            f"{type(meta).__name__}")
    if meta.get("format") != FORMAT:
        raise UsageError(f"{uri}: unknown index format {meta.get('format')!r}")

    def bad(field: str, expected: str) -> UsageError:
        shown = repr(meta[field])[:60] if field in meta else "missing"
        return _not_an_index(uri, "index.json", f"{field!r}: expected {expected}, got {shown}")

    if meta.get("metric") not in METRICS:
        raise bad("metric", " or ".join(METRICS))
    if meta.get("kind") not in ("exact", "hnsw"):
        raise bad("kind", "exact or hnsw")
    for key in ("n", "dim", "ef"):
        if not isinstance(meta.get(key), int) or isinstance(meta[key], bool) or meta[key] < 1:
            raise bad(key, "a positive integer")
    columns = meta.get("columns")
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise bad("columns", "a list of vec_ column names")
    if meta.get("pipeline") is not None and not isinstance(meta["pipeline"], dict):
        raise bad("pipeline", "a pipeline object or null")
    for key in ("mean", "scale"):
        value = meta.get(key)
        if value is not None and (not isinstance(value, list) or len(value) != meta["dim"]
                                  or not all(isinstance(v, (int, float)) for v in value)):
            raise bad(key, f"null or a list of {meta['dim']} numbers")
    if (meta.get("mean") is None) != (meta.get("scale") is None):
        raise _not_an_index(uri, "index.json", "'mean' and 'scale' must both be given or "
                            "both be null")
    return meta


def load_index(uri: str, storage_options: Mapping[str, Any] | None = None) -> VectorIndex:
    """Read an index directory.

    Parameters
    ----------
    uri : str
        An index directory written by :func:`build_index` (path or URL).
    storage_options : mapping, optional
        fsspec options.

    Returns
    -------
    VectorIndex

    Raises
    ------
    UsageError
        A missing, incomplete or corrupt index: the message names the directory and the file.
        Nothing is unpickled (``vectors.npy`` is read with ``allow_pickle=False``).
    """
    try:
        meta = json.loads(storage.read_bytes(storage.join(uri, "index.json"), storage_options))
    except (OSError, ValueError, RecursionError) as e:
        raise _not_an_index(uri, "index.json", e) from e
    meta = _check_meta(uri, meta)
    n, dim = meta["n"], meta["dim"]
    try:
        vectors = np.load(io.BytesIO(_read_part(uri, "vectors.npy", storage_options)),
                          allow_pickle=False)
    except UsageError:
        raise
    except Exception as e:  # pickled, truncated or not an .npy file at all
        problem = ("holds pickled (object) data, which is never loaded" if "pickle" in str(e)
                   else f"not a NumPy array file ({type(e).__name__}: {e})")
        raise _not_an_index(uri, "vectors.npy", problem) from e
    if vectors.dtype != np.float32 or vectors.shape != (n, dim):
        raise _not_an_index(uri, "vectors.npy", f"{vectors.dtype} array of shape "
                            f"{vectors.shape}, index.json says float32 of shape {(n, dim)}")
    rows_uri = storage.join(uri, "rows.parquet")
    try:
        rows = storage.read_parquet(rows_uri, storage_options).to_pylist()
    except OSError as e:
        raise _not_an_index(uri, "rows.parquet", e) from e
    if len(rows) != n:
        raise _not_an_index(uri, "rows.parquet", f"{len(rows)} rows, index.json says {n}")

    def arr(v):
        return (None if v is None else np.asarray(v, np.float32))
    index = VectorIndex(vectors, rows, meta["metric"], meta["kind"], arr(meta.get("mean")),
                        arr(meta.get("scale")), meta["columns"], meta.get("pipeline"),
                        ef=meta["ef"], models=meta.get("models") or None)
    if meta["kind"] == "hnsw":
        import hnswlib

        data = _read_part(uri, "hnsw.bin", storage_options)
        graph = hnswlib.Index(space="cosine" if meta["metric"] == "cosine" else "l2", dim=dim)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "hnsw.bin")
            with open(path, "wb") as f:
                f.write(data)
            try:
                graph.load_index(path, max_elements=n)
            except (RuntimeError, ValueError, MemoryError) as e:  # hnswlib: "corrupted"
                raise _not_an_index(uri, "hnsw.bin", f"not an HNSW graph of this index "
                                    f"({e})") from e
        # a graph of the distinct vectors, or (indexes built before) of every row
        if meta.get("graph") != "distinct" or meta.get("groups") is False:
            keep, groups = np.arange(n), None
        elif meta.get("groups") is True:
            keep, groups = _read_groups(uri, n, storage_options)
        else:  # saved before groups.npy was: found again
            keep, groups = _distinct(vectors)
        if graph.get_current_count() != len(keep):
            raise _not_an_index(uri, "hnsw.bin", f"a graph of {graph.get_current_count()} "
                                f"vectors, vectors.npy holds {len(keep)} distinct ones")
        index.hnsw, index.groups = graph, groups
    return index


def _read_groups(uri: str, n: int, storage_options: Mapping[str, Any] | None):
    """(keep, groups) of :func:`_distinct` from ``groups.npy`` (the graph item of each row)."""
    try:
        item = np.load(io.BytesIO(_read_part(uri, "groups.npy", storage_options)),
                       allow_pickle=False)
    except UsageError:
        raise
    except Exception as e:
        raise _not_an_index(uri, "groups.npy", f"not a NumPy array file ({e})") from e
    counts = (np.bincount(item) if item.dtype == np.int64 and item.shape == (n,)
              and n and item.min() >= 0 else None)
    if counts is None or not counts.all():
        raise _not_an_index(uri, "groups.npy", f"expected the graph item (0, 1, ...) of each "
                            f"of {n} rows, got a {item.dtype} array of shape {item.shape}")
    order = np.argsort(item, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)])
    return order[starts[:-1]], (order, starts)


def retrieval_metrics(query_labels: Sequence[Any], neighbour_labels: np.ndarray,
                      relevant_counts: Sequence[int], k: int) -> dict[str, float]:
    """recall@k, precision@k and mAP@k (see the module docs) from neighbour label lists."""
    q = np.asarray(query_labels, dtype=object)[:, None]
    rel = (np.asarray(neighbour_labels, dtype=object)[:, :k] == q).astype(np.float64)
    hits_at = np.cumsum(rel, axis=1)
    precision_at = hits_at / np.arange(1, rel.shape[1] + 1)[None, :]
    denom = np.minimum(k, np.maximum(np.asarray(relevant_counts, np.float64), 1.0))
    ap = (precision_at * rel).sum(axis=1) / denom
    return {f"recall@{k}": float(rel.any(axis=1).mean()),
            # relevant among the k nearest / k, also when the database holds fewer than k
            f"precision@{k}": float((rel.sum(axis=1) / k).mean()) if len(rel) else 0.0,
            f"mAP@{k}": float(ap.mean()), "queries": len(q)}


def evaluate_index(index: VectorIndex, k: int = 10) -> dict[str, float]:
    """mAP@k, recall@k and precision@k of an index on its own labelled rows."""
    labels = np.asarray([r.get("label") for r in index.rows], dtype=object)
    unlabelled = sum(v is None for v in labels)
    if unlabelled:
        raise UsageError(
            "index eval needs labelled rows (extract with --label-from): "
            f"{unlabelled} of {len(labels)} rows have no label")
    split = np.asarray([r.get("split") for r in index.rows], dtype=object)
    t0 = time.perf_counter()
    is_query = split == "test"
    if is_query.any() and (~is_query).any():
        db = np.flatnonzero(~is_query)
        queries = np.flatnonzero(is_query)
        if index.kind == "hnsw":
            graph, groups = _hnsw(index.vectors[db], index.metric)
            sub = VectorIndex(index.vectors[db], [], index.metric, "hnsw", ef=index.ef,
                              hnsw=graph, groups=groups)
        else:
            sub = VectorIndex(index.vectors[db], [], index.metric)
        idx, _ = sub.search(index.vectors[queries], k)
        neighbours = labels[db][idx]
        db_labels = labels[db]
        mode = "test rows against the rest"
    else:  # leave one out
        if len(index) < 2:
            raise UsageError("index eval needs at least two rows (each is searched among "
                             "the others)")
        queries = np.arange(len(index))
        idx, _ = index.search(index.vectors, k + 1)
        keep = np.array([[j for j in row if j != i][:k] for i, row in enumerate(idx)])
        neighbours = labels[keep]
        db_labels = labels
        mode = "leave one out"
    values, counts = np.unique(db_labels.astype(str), return_counts=True)
    count_of = dict(zip(values, counts, strict=True))
    relevant = [count_of.get(str(labels[q]), 0) - (mode == "leave one out") for q in queries]
    metrics = retrieval_metrics(labels[queries], neighbours, relevant, k)
    metrics.update(mode=mode, kind=index.kind, seconds=time.perf_counter() - t0)
    return metrics
