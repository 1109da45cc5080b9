"""The manifest: one row per work unit, the job's memory.

While a job runs, every finished row is appended (and flushed) to a JSON-lines *journal* beside
the manifest, so a job killed at any moment keeps every row it finished. When the job ends the
journal and any earlier manifest are folded into one Parquet file, written atomically, and the
journal is removed. Readers (resume, reports) see the Parquet rows plus any journal rows.

Rows are flat dicts of scalars (str, int, float, bool, None) and lists of floats (vectors).
Row ``key`` identifies the unit (an input URI, or ``URI#tile=r,c`` for a tile); for each key
the last row written wins.

A writer of a local manifest holds an exclusive lock (``flock``) on its journal while it is
open: a second job writing the same manifest at the same time is refused
(:class:`ManifestBusyError`) instead of mixing its rows and temporaries with the first one's.
The lock goes with the process, so a killed job never leaves a stale one behind.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pixelmill import storage
from pixelmill._tables import (
    RowChunks,
    _jsonable,
    column,
    column_order,
    concat,
    last_row_indices,
    last_row_per_key,
    rows_to_table,
    select_rows,
    without_layout,
)
from pixelmill.errors import PixelmillError, StorageError

__all__ = ["TILE_KEY", "ManifestBusyError", "ManifestWriter", "column", "is_tile_row",
           "read_manifest", "read_manifest_metadata", "read_manifest_table", "rows_to_table",
           "select_rows"]

STATUSES = ("ok", "invalid", "failed")


#: what a tile's row key adds to its image's URI (``URI#tile=r,c``)
TILE_KEY = "#tile="


def is_tile_row(row: Mapping[str, Any]) -> bool:
    """Whether ``row`` is one tile of a tiled image (its key ``URI#tile=r,c``), not an image.

    A ``#`` alone says nothing: it is an ordinary character of file names, and so is
    ``#tile=``: an input named ``#tile=1,2.jpg`` is an image (its key is its URI; a tile's key
    is its image's URI and a ``#tile=`` suffix)."""
    key, uri = str(row.get("key") or ""), str(row.get("uri") or "")
    if uri:
        return key.startswith(uri + TILE_KEY)
    return TILE_KEY in key


def journal_path(manifest_uri: str) -> str:
    return manifest_uri + ".journal.jsonl"


def earlier_run(uri: str, storage_options: Mapping[str, Any] | None = None) -> str | None:
    """What an earlier run left at the manifest ``uri``: ``"manifest"``, ``"journal"`` (a
    local run interrupted, or one still going: its journal exists from its start, before any
    output is written) or None. An unreachable store is a StorageError (exit 1)."""
    if storage.exists(uri, storage_options):
        return "manifest"
    fs, path = storage.get_fs(uri, storage_options)
    if storage._is_local(fs) and os.path.exists(journal_path(path)):
        return "journal"
    return None


def keeps_journal(uri: str, storage_options: Mapping[str, Any] | None = None) -> bool:
    """Whether a run writing the manifest ``uri`` journals from its start (a local one does; on
    an object store the rows are kept in memory): with such a manifest, an output that has
    neither manifest nor journal beside it was not left by a run."""
    return storage._is_local(storage.get_fs(uri, storage_options)[0])


def journal_in_the_way(uri: str, storage_options: Mapping[str, Any] | None = None) -> Exception:
    """The usage error for a rerun (no --resume, no --overwrite) that finds only a journal."""
    from pixelmill.errors import UsageError

    path = journal_path(storage.get_fs(uri, storage_options)[1])
    return UsageError(f"{uri}: a run's journal is there ({path}: a run that was interrupted, or "
                      "one still going); use --resume to continue it or --overwrite to start over")


def foreign_output(output: str, uri: str) -> Exception:
    """The usage error for an existing output that no earlier run left a manifest for."""
    from pixelmill.errors import UsageError

    return UsageError(f"OUTPUT: {output} already exists and no earlier run's manifest ({uri}) is "
                      "there to resume; use --overwrite to replace it or write to another OUTPUT")


class ManifestBusyError(PixelmillError):
    """Another job (another process, or another writer here) is writing this manifest now."""


def _lock_journal(jpath: str, uri: str) -> Any:
    """Open (creating it if need be) and exclusively lock the journal at ``jpath``; the open
    file is returned. A journal unlinked by the job that held the lock (it finished between
    our open and our lock) is not the journal any more: it is opened again."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock
        return open(jpath, "a+b")

    while True:
        f = open(jpath, "a+b")  # noqa: SIM115
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            raise ManifestBusyError(
                f"{uri}: another pixelmill job is writing this manifest right now (its journal "
                f"{jpath} is locked); wait for it to end, or stop it and run again with "
                "--resume") from None
        except OSError:  # a filesystem without locks: go on unlocked, as before
            return f
        try:
            same = os.fstat(f.fileno()).st_ino == os.stat(jpath).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return f
        f.close()


def _cut_torn_tail(f: Any) -> None:
    """Drop a last line cut short (a kill or a full disk mid-write), so that the rows appended
    next start on a line of their own instead of being glued to the broken one."""
    size = f.seek(0, os.SEEK_END)
    if size == 0:
        return
    f.seek(size - 1)
    if f.read(1) == b"\n":
        return
    pos = size
    while pos > 0:  # back to the last newline, reading blocks
        start = max(0, pos - 65536)
        f.seek(start)
        block = f.read(pos - start)
        i = block.rfind(b"\n")
        if i >= 0:
            f.truncate(start + i + 1)
            return
        pos = start
    f.truncate(0)


def _journal_tables(path: str, *, layouts: bool = False) -> list[pa.Table]:
    """The rows of a journal, :data:`CHUNK_ROWS` at a time as Arrow tables."""
    chunks = RowChunks(layouts=layouts)
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    row = json.loads(line)
                except ValueError:
                    continue  # a line cut by a kill or a full disk: the other lines are whole
                if isinstance(row, dict):
                    chunks.append(row)
    except FileNotFoundError:
        pass
    return [chunks.table()] if len(chunks) else []


def _manifest_parts(uri: str, storage_options: Mapping[str, Any] | None, *,
                    layouts: bool = False) -> tuple[pa.Table | None, list[pa.Table]]:
    """(the manifest's Parquet rows or None, the tables of an unfinished journal's rows)."""
    parquet, journal = None, []
    fs, path = storage.get_fs(uri, storage_options)
    if fs.exists(path):
        # rows only: the file's settings are read_manifest_metadata's, not a later run's
        parquet = storage.read_parquet(uri, storage_options).replace_schema_metadata(None)
    if storage._is_local(fs):
        journal = _journal_tables(journal_path(path), layouts=layouts)
    return parquet, journal


def read_manifest_table(uri: str, storage_options: Mapping[str, Any] | None = None
                        ) -> pa.Table:
    """All rows of a manifest (Parquet plus an unfinished journal) as one Arrow table, the last
    row per key winning (in the place of the key's first row)."""
    parquet, journal = _manifest_parts(uri, storage_options)
    return last_row_per_key(concat([t for t in (parquet, *journal) if t is not None]))


def read_manifest(uri: str, storage_options: Mapping[str, Any] | None = None) -> list[dict]:
    """All rows of a manifest (Parquet plus an unfinished journal), last row per key winning.

    One dict per row: for a manifest of millions of rows, :func:`read_manifest_table` (or
    :func:`column` of it) holds a fraction of the memory."""
    return read_manifest_table(uri, storage_options).to_pylist()


def read_manifest_metadata(uri: str, storage_options: Mapping[str, Any] | None = None
                           ) -> dict[str, str]:
    """The key/value metadata of a manifest's Parquet file (job settings, timings); {} if none."""
    fs, path = storage.get_fs(uri, storage_options)
    if not fs.exists(path):
        return {}
    schema = storage.read_parquet(uri, storage_options, schema_only=True)
    return {k.decode(): v.decode() for k, v in (schema.metadata or {}).items()
            if not k.startswith(b"ARROW")}


def _null_where_no_value(table: pa.Table, kept: pa.Array | None = None) -> pa.Table:
    """A column without a value in any kept row (``kept``: their indices, None for all) is of
    type null, as in a run that never wrote one there: rows superseded by later ones (a failed
    row's ``reason`` redone ok on resume, the tiled runner's own row of an image) must not leave
    their type behind. ``vec_*`` columns keep list<float32>."""
    import pyarrow.compute as pc

    n = table.num_rows if kept is None else len(kept)
    for i, field in enumerate(table.schema):
        if not n or field.type == pa.null() or field.name.startswith("vec_"):
            continue
        column = table.column(i)
        if kept is None:
            empty = column.null_count == table.num_rows
        else:  # one bit per row, not a copy of the column's values
            empty = not pc.any(pc.take(pc.is_valid(column), kept)).as_py()
        if empty:
            table = table.set_column(i, field.name, pa.nulls(table.num_rows))
    return table


#: rows per Parquet row group written by :meth:`ManifestWriter.close` (each a copy in turn)
_WRITE_ROWS = 65536


class ManifestWriter:
    """Append rows as they finish; ``close()`` folds everything into one Parquet file.

    ``keep_existing`` keeps rows of an earlier manifest at the same URI (resume). Rows are held
    as Arrow tables (:class:`pixelmill._tables.RowChunks`), not dicts: ~0.3 KB per row.
    """

    def __init__(
        self,
        uri: str,
        *,
        keep_existing: bool = False,
        storage_options: Mapping[str, Any] | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        self.uri = uri
        self.storage_options = dict(storage_options or {})
        self.metadata = dict(metadata or {})
        fs, path = storage.get_fs(uri, self.storage_options)
        self._local = storage._is_local(fs)
        self._rows = RowChunks(layouts=True)  # columns in key order, whatever order rows finish in
        self._lock = threading.Lock()
        self._journal = None
        self._journal_path: str | None = None
        self._created_journal = False
        if self._local:
            os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
            jpath = self._journal_path = journal_path(path)
            self._created_journal = not os.path.exists(jpath)
            # locked before the earlier rows are read: they cannot change under this writer
            self._journal = _lock_journal(jpath, uri)
            if keep_existing:
                _cut_torn_tail(self._journal)
            else:
                self._journal.truncate(0)
        self._earlier, self._parquet_columns = pa.table({}), []
        if keep_existing:
            # the journal's rows keep their layouts; the Parquet file's rows have its columns
            parquet, journal = _manifest_parts(uri, self.storage_options, layouts=True)
            self._parquet_columns = [] if parquet is None else parquet.column_names
            self._earlier = last_row_per_key(
                concat([t for t in (parquet, *journal) if t is not None]))

    @property
    def earlier_table(self) -> pa.Table:
        """The earlier run's rows (when resuming), one per key."""
        return without_layout(self._earlier)

    @property
    def earlier_rows(self) -> list[dict[str, Any]]:
        """The earlier run's rows as dicts (a new list each time: for a large manifest, read
        the columns needed from :attr:`earlier_table` instead)."""
        return self.earlier_table.to_pylist()

    def forget(self, keys: Iterable[Any]) -> None:
        """Drop earlier rows of ``keys`` (rows this run knows to be superseded)."""
        gone = list(dict.fromkeys(keys))
        if not gone or "key" not in self._earlier.column_names:
            return
        import pyarrow.compute as pc

        keys_col = self._earlier.column("key")
        drop = pc.is_in(keys_col, value_set=pa.array(gone, type=keys_col.type))
        self._earlier = self._earlier.filter(pc.invert(pc.fill_null(drop, False)))

    @property
    def appended(self) -> int:
        """Rows appended by this writer so far."""
        return len(self._rows)

    def append(self, row: Mapping[str, Any]) -> None:
        row = {k: _jsonable(v) for k, v in row.items()}
        with self._lock:
            self._rows.append(row)
            if self._journal is not None:
                line = (json.dumps(row, default=str) + "\n").encode("utf-8")
                try:
                    self._journal.write(line)
                    self._journal.flush()
                except OSError as e:  # a full disk: the next run cuts the torn line
                    raise StorageError(
                        f"{journal_path(self.uri)}: cannot write the manifest journal: "
                        f"{e.strerror or e}; the rows written so far are kept (run again "
                        "with --resume once it can be written)") from e

    def extend(self, rows: Iterable[Mapping[str, Any]]) -> None:
        for row in rows:
            self.append(row)

    def _merged(self, *, sort: bool) -> tuple[pa.Table, pa.Array | None]:
        """(every row held, earlier and this run's, in its final columns; the indices of the
        rows that stand, last per key, or None for all) — not yet copied into one table."""
        with self._lock:
            mine = self._rows.table()
        every = concat([self._earlier, mine])
        kept = last_row_indices(every, sort=sort)
        every = every.select(column_order(every, kept, self._parquet_columns))
        return _null_where_no_value(every, kept), kept

    def table(self, *, sort: bool = False, columns: Sequence[str] | None = None) -> pa.Table:
        """Earlier rows (when resuming) and this run's rows, last row per key winning; with
        ``sort``, in key order; with ``columns``, only those of them that exist (the others
        are not copied)."""
        every, kept = self._merged(sort=sort)
        if columns is not None:
            every = every.select([c for c in dict.fromkeys(columns) if c in every.column_names])
        return every if kept is None else every.take(kept)

    def rows(self) -> list[dict[str, Any]]:
        """:meth:`table` as dicts."""
        return self.table().to_pylist()

    def close(self, columns: Sequence[str] | None = None) -> pa.Table:
        """Write the Parquet manifest atomically, remove the journal; return the table (of
        ``columns`` only, when given: the whole table is never copied then, only one row group
        at a time as it is written).

        Rows are written in key order, not in the order workers finished them: one job gives
        the same manifest on every engine and in every run."""
        every, kept = self._merged(sort=True)
        meta = {**(every.schema.metadata or {}), **{k: str(v) for k, v in self.metadata.items()}}
        every = every.replace_schema_metadata(meta or None)
        n = every.num_rows if kept is None else len(kept)
        sink = io.BytesIO()
        with pq.ParquetWriter(sink, every.schema) as parquet:
            for start in range(0, n, _WRITE_ROWS) if n else ():
                parquet.write_table(every.slice(start, _WRITE_ROWS) if kept is None
                                    else every.take(kept[start:start + _WRITE_ROWS]))
            if not n:
                parquet.write_table(every)
        storage.write_atomic(self.uri, sink.getvalue(), self.storage_options)
        del sink
        if self._journal is not None:
            # unlinked while still locked: a job waiting for the lock sees it is gone
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._journal_path)
            self._journal.close()
            self._journal = None
        if columns is not None:
            every = every.select([c for c in dict.fromkeys(columns) if c in every.column_names])
        return every if kept is None else every.take(kept)

    def abandon(self) -> None:
        """Stop writing without folding the rows into the Parquet file (a job that was
        interrupted or refused): the journal keeps the rows for ``--resume``, the lock is
        released. A journal this writer created and never wrote to is removed.

        A manifest on an object store has no journal: the rows finished so far (with the
        earlier run's, when resuming) are written as the manifest instead, so ``--resume``
        continues from them (they were lost, and the message said they were kept)."""
        if self._journal is None:
            if not self._local and len(self._rows):
                with contextlib.suppress(Exception):
                    self.close()
            return
        with contextlib.suppress(OSError):
            empty = self._journal.seek(0, os.SEEK_END) == 0
            if empty and self._created_journal and not len(self._rows):
                os.unlink(self._journal_path)
        with contextlib.suppress(OSError):
            self._journal.close()
        self._journal = None

    def __enter__(self) -> ManifestWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._journal is not None or not exc[0]:
            self.close()

    def __del__(self) -> None:  # pragma: no cover - a writer dropped unclosed
        with contextlib.suppress(Exception):
            if self._journal is not None:
                self._journal.close()
