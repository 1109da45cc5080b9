"""Manifest rows as Arrow tables: built from dicts, gathered in chunks, the last row per key.

A job's driver receives one row (a dict) per finished unit. Held as dicts, a row costs ~1.2 KB
(a thumbnail row: 25 fields); gathered into Arrow tables of :data:`CHUNK_ROWS` rows it costs
what its values do (~0.3 KB), so a million-input job's driver holds ~0.3 GB instead of
~1.2 GB, and folding the rows into the Parquet manifest at the end copies them once.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import pyarrow as pa

__all__ = ["CHUNK_ROWS", "RowChunks", "column", "concat", "iter_rows", "last_row_indices",
           "last_row_per_key", "rows_to_table", "select_rows"]

#: rows held as dicts before they are turned into one Arrow table
CHUNK_ROWS = 4096

#: a hidden column of :class:`RowChunks` tables made with ``layouts=True``: each row's layout,
#: the id of its dict's keys in their order. An Arrow table cannot tell a key a row lacks from
#: a None, so without it the columns of rows gathered in chunks come in the order the rows
#: happened to finish in; :func:`column_order` puts them first-seen in the kept rows' order,
#: as one ``rows_to_table`` over the rows (in key order) did before rows were held as tables.
LAYOUT = "\x00layout"

_LAYOUT_IDS: dict[tuple[str, ...], int] = {}
_LAYOUT_NAMES: list[tuple[str, ...]] = []
_LAYOUT_LOCK = threading.Lock()


def _layout_id(names: tuple[str, ...]) -> int:
    i = _LAYOUT_IDS.get(names)
    if i is None:
        with _LAYOUT_LOCK:
            i = _LAYOUT_IDS.setdefault(names, len(_LAYOUT_NAMES))
            if i == len(_LAYOUT_NAMES):
                _LAYOUT_NAMES.append(names)
    return i


def column_order(table: pa.Table, kept: pa.Array | None = None,
                 untracked: Sequence[str] = ()) -> list[str]:
    """The columns of ``table`` but :data:`LAYOUT`, first-seen over the layouts of its rows
    (those at ``kept``, in that order): rows without a layout (an earlier manifest's Parquet
    rows) have the columns ``untracked``."""
    have = [n for n in table.column_names if n != LAYOUT]
    if LAYOUT not in table.column_names:
        return have
    import pyarrow.compute as pc

    layouts = table.column(LAYOUT)
    if kept is not None:
        layouts = pc.take(layouts, kept)
    names: dict[str, None] = {}
    for layout in pc.unique(layouts).to_pylist():  # in order of first occurrence
        names.update(dict.fromkeys(untracked if layout is None else _LAYOUT_NAMES[layout]))
    present = set(have)
    return [n for n in names if n in present] + [n for n in have if n not in names]


def without_layout(table: pa.Table) -> pa.Table:
    return table.drop_columns([LAYOUT]) if LAYOUT in table.column_names else table

#: types a row's value already has in JSON and Arrow (the common case: checked first, since
#: every cell of every row goes through :func:`_jsonable`, millions of times per job)
_PLAIN = frozenset({str, int, float, bool, type(None)})


def _jsonable(value: Any) -> Any:
    if type(value) in _PLAIN:
        return value
    try:
        import numpy as np

        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, np.ndarray):
            return value.tolist()
    except ImportError:  # pragma: no cover
        pass
    return value


def column(table: pa.Table, name: str) -> list[Any]:
    """One column of a manifest table as a list (Nones where the table has no such column):
    what a manifest's reader needs, without a dict per row."""
    if name in table.column_names:
        return table.column(name).to_pylist()
    return [None] * table.num_rows


def select_rows(table: pa.Table, columns: Sequence[str] | None = None, *,
                status: str | None = None, key: str | None = None,
                key_prefix: str | None = None) -> list[dict[str, Any]]:
    """Rows of a manifest table as dicts, of ``columns`` only (those the table has; all when
    None), and only those whose ``status`` / ``key`` is the one given (or whose key starts
    with ``key_prefix``): what a reader needs from a table of millions of rows, without a dict
    of every cell of every row."""
    import pyarrow.compute as pc

    if key_prefix is not None:
        if "key" not in table.column_names:
            return []
        table = table.filter(pc.fill_null(pc.starts_with(table.column("key"), key_prefix),
                                          False))

    for name, value in (("status", status), ("key", key)):
        if value is not None:
            if name not in table.column_names:
                return []
            table = table.filter(pc.fill_null(pc.equal(table.column(name), value), False))
    if columns is not None:
        table = table.select([c for c in dict.fromkeys(columns) if c in table.column_names])
    return table.to_pylist()


def iter_rows(table: pa.Table, columns: Sequence[str] | None = None, *,
              status: str | None = None, batch: int = 65536) -> Iterator[dict[str, Any]]:
    """:func:`select_rows` one batch of rows at a time: dicts for ``batch`` rows at most are
    alive at once (a resume reads the rows of a manifest of millions)."""
    for start in range(0, table.num_rows, batch):
        yield from select_rows(table.slice(start, batch), columns, status=status)


def _as_text(values: Iterable[Any]) -> pa.Array:
    return pa.array([None if v is None else str(v) for v in values], type=pa.string())


def rows_to_table(rows: Sequence[Mapping[str, Any]], schema: pa.Schema | None = None) -> pa.Table:
    """Rows (dicts) to an Arrow table; columns are the union of keys in first-seen order.

    ``vec_*`` columns (feature vectors) are list<float32>; a column whose values are of kinds
    Arrow cannot hold in one type (numbers and text, say) is kept as text."""
    columns: dict[str, None] = {}
    for row in rows:
        for k in row:
            columns.setdefault(k, None)
    data = {k: [_jsonable(r.get(k)) for r in rows] for k in columns}
    if schema is not None:
        return pa.Table.from_pydict(data, schema=schema)
    arrays = {}
    for k, values in data.items():
        if k.startswith("vec_"):  # feature vectors: list<float32>
            arrays[k] = pa.array(values, type=pa.list_(pa.float32()))
        else:
            try:
                arrays[k] = pa.array(values)
            except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):  # mixed kinds (or an
                # int beyond 64 bits): keep them as text
                arrays[k] = _as_text(values)
    return pa.Table.from_pydict(arrays)


def concat(tables: Sequence[pa.Table]) -> pa.Table:
    """Tables of rows one after another, columns the union of theirs in first-seen order.

    A column missing from a table is null there; numbers of different widths or kinds are
    promoted as one ``rows_to_table`` over all the rows would (int and float: float); a column
    that holds text in one table and numbers in another (or kinds no type holds together) is
    text everywhere, as in ``rows_to_table``, each number written as its table held it (an int
    in a table of floats reads ``1.0`` where one ``rows_to_table`` would write ``1``: no column
    of a job mixes numbers and text so)."""
    tables = [t for t in tables if t.num_columns]
    if not tables:
        return pa.table({})
    if len(tables) == 1:
        return tables[0]
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        pass
    names: dict[str, None] = {}
    for t in tables:
        names.update(dict.fromkeys(t.column_names))
    clashing = []
    for name in names:
        kinds = {t.schema.field(name).type for t in tables if name in t.column_names} - {pa.null()}
        if len(kinds) > 1:
            try:
                pa.unify_schemas([pa.schema([(name, k)]) for k in kinds],
                                 promote_options="permissive")
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
                clashing.append(name)
    fixed = []
    for t in tables:
        for name in clashing:
            if name in t.column_names:
                i = t.column_names.index(name)
                t = t.set_column(i, name, _as_text(t.column(name).to_pylist()))
        fixed.append(t)
    return pa.concat_tables(fixed, promote_options="permissive")


def last_row_indices(table: pa.Table, *, sort: bool = False) -> pa.Array | None:
    """The indices of :func:`last_row_per_key`'s rows in ``table`` (None: all, in order)."""
    if "key" not in table.column_names or table.num_rows == 0:
        return None
    keys = table.column("key")
    if keys.null_count:  # rare (tables made by hand): rows without a key all stay
        last: dict[Any, int] = {}
        for i, k in enumerate(keys.to_pylist()):
            last[i if k is None else ("k", k)] = i
        return pa.array(sorted(last.values()), type=pa.int64())
    import pyarrow.compute as pc

    if not pa.types.is_string(keys.type) and not pa.types.is_large_string(keys.type):
        keys = pc.cast(keys, pa.string())  # ordered as their text, as rows always were
    index = pa.table({"key": keys, "i": pa.array(range(table.num_rows), type=pa.int64())})
    groups = index.group_by("key", use_threads=False).aggregate([("i", "min"), ("i", "max")])
    if sort:
        order = pc.sort_indices(groups, sort_keys=[("key", "ascending")])
    else:
        order = pc.sort_indices(groups, sort_keys=[("i_min", "ascending")])
    take = groups.column("i_max").take(order)
    if isinstance(take, pa.ChunkedArray):
        take = take.combine_chunks()
    if len(take) == table.num_rows and pc.all(pc.equal(take, index.column("i"))).as_py():
        return None  # already one row per key, in order
    return take


def last_row_per_key(table: pa.Table, *, sort: bool = False) -> pa.Table:
    """One row per ``key``: the last one (later rows supersede earlier ones).

    Keys keep the place of their first row, or with ``sort`` come in key order (code-point
    order of the text: UTF-8 bytes sort as their code points). Rows without a key are all
    kept (and the table is not sorted)."""
    take = last_row_indices(table, sort=sort)
    return table if take is None else table.take(take)


class RowChunks:
    """Rows appended one by one, kept as Arrow tables of :data:`CHUNK_ROWS` rows."""

    def __init__(self, chunk_rows: int = CHUNK_ROWS, *, layouts: bool = False) -> None:
        self.chunk_rows = chunk_rows
        self._tables: list[pa.Table] = []
        self._pending: list[dict[str, Any]] = []
        self._layouts: list[int] | None = [] if layouts else None
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def append(self, row: dict[str, Any]) -> None:
        self._pending.append(row)
        if self._layouts is not None:
            self._layouts.append(_layout_id(tuple(row)))
        self._count += 1
        if len(self._pending) >= self.chunk_rows:
            self._seal()

    def _seal(self) -> None:
        if self._pending:
            table = rows_to_table(self._pending)
            if self._layouts is not None:
                table = table.append_column(LAYOUT, pa.array(self._layouts, type=pa.int32()))
                self._layouts = []
            self._tables.append(table)
            self._pending = []

    def table(self) -> pa.Table:
        """All rows so far, in the order appended."""
        self._seal()
        if len(self._tables) > 1:  # one table from here on (fewer, larger chunks)
            self._tables = [concat(self._tables)]
        return self._tables[0] if self._tables else pa.table({})
