"""Planning: naming templates, relative folders, formats, listing options, collisions."""

from __future__ import annotations

import pytest

from pixelmill.errors import InvalidParameterError, NoInputError, UsageError
from pixelmill.jobs import plan_units, render_name
from pixelmill.jobs._plan import check_format


@pytest.mark.parametrize(
    ("template", "rel", "ext", "expected"),
    [
        ("{parent}/{stem}.{ext}", "a/b/c.png", "jpg", "a/b/c.jpg"),
        ("{parent}/{stem}.{ext}", "c.png", "png", "c.png"),
        ("{stem}_{suffix}.{ext}", "a/c.tif", "png", "c_tif.png"),
        ("{label}/{index:04d}.{ext}", "x/c.png", "webp", "cats/0007.webp"),
    ],
)
def test_render_name(template, rel, ext, expected):
    assert render_name(template, rel, ext, label="cats", index=7) == expected


@pytest.mark.parametrize("template", ["{nope}.{ext}", "../{stem}.{ext}", "{parent}"])
def test_bad_templates_name_the_field(template):
    with pytest.raises(InvalidParameterError) as e:
        render_name(template, "c.png", "png")
    assert e.value.field == "name"


def test_plan_keeps_relative_folders_and_formats(collection):
    root, kinds = collection
    units = plan_units(str(root), "/out", label_from="parent")
    assert sorted(u.relpath for u in units) == sorted(kinds)
    by_rel = {u.relpath: u for u in units}
    assert by_rel["cats/deep/chelsea_small.png"].output == "/out/cats/deep/chelsea_small.png"
    assert by_rel["cats/deep/chelsea_small.png"].label == "deep"
    assert by_rel["people/astronaut.jpg"].format == "jpg"
    units = plan_units(str(root), "/out", format="webp", recursive=False)
    assert {u.relpath for u in units} == {r for r in kinds if "/" not in r}
    assert all(u.output.endswith(".webp") for u in units)
    assert [u.index for u in plan_units(str(root), None, limit=2)] == [0, 1]


def test_plan_collisions_fail_before_work(collection):
    root, _ = collection
    (root / "coffee.png").write_bytes(b"x")
    with pytest.raises(UsageError, match=r"coffee\.(jpg|png).*coffee\.(jpg|png)"):
        plan_units(str(root), "/out", format="png")


def test_plan_errors(tmp_path, collection):
    (tmp_path / "empty").mkdir()
    with pytest.raises(NoInputError):
        plan_units(str(tmp_path / "empty"), "/out")
    with pytest.raises(InvalidParameterError) as e:
        plan_units(str(collection[0]), "/out", limit=0)
    assert e.value.field == "limit"
    with pytest.raises(InvalidParameterError) as e:
        check_format("gifx", None)
    assert e.value.field == "format"
    with pytest.raises(InvalidParameterError) as e:
        check_format("png", 90)
    assert e.value.field == "quality"
    with pytest.raises(InvalidParameterError):
        check_format("jpg", 101)
    assert check_format("JPEG", 90) == "jpg"


def test_plan_from_scan_manifest(tmp_path, collection):
    from pixelmill.manifest import ManifestWriter

    root, kinds = collection
    rows = [{"key": str(root / r), "uri": str(root / r), "relpath": r, "size": 1, "label": "L"}
            for r in sorted(kinds)]
    with ManifestWriter(str(tmp_path / "scan.parquet")) as w:
        w.extend(rows)
    units = plan_units(str(tmp_path / "scan.parquet"), str(tmp_path / "out"))
    assert [u.relpath for u in units] == [r["relpath"] for r in sorted(rows, key=lambda r: r["uri"])]
    assert {u.label for u in units} == {"L"}


def test_plan_from_a_real_scan_keeps_the_folders(tmp_path, collection):
    """`pixelmill scan` writes no relpath column: a run from its manifest wrote every output
    flat (cats/chelsea.jpg -> out/chelsea.jpg) and refused same-named files in two folders."""
    import pyarrow.parquet as pq

    from pixelmill.inventory import scan

    root, kinds = collection
    (root / "dogs").mkdir()
    (root / "dogs" / "chelsea.jpg").write_bytes((root / "cats/chelsea.jpg").read_bytes())
    pq.write_table(scan(str(root), recursive=True), tmp_path / "scan.parquet")
    units = plan_units(str(tmp_path / "scan.parquet"), str(tmp_path / "out"))
    assert sorted(u.relpath for u in units) == sorted([*kinds, "dogs/chelsea.jpg"])
    assert {u.output for u in units} >= {str(tmp_path / "out" / "cats" / "chelsea.jpg"),
                                         str(tmp_path / "out" / "dogs" / "chelsea.jpg")}
    pq.write_table(scan(str(root / "cats"), recursive=True), tmp_path / "cats.parquet")
    assert sorted(u.relpath for u in plan_units(str(tmp_path / "cats.parquet"), None)) == [
        "chelsea.jpg", "deep/chelsea_small.png"]


def test_a_filtered_scan_keeps_the_paths_below_the_scanned_folder(tmp_path, collection):
    """A scan of the whole collection filtered to one folder (pandas/pyarrow, a user's
    selection) plans the same relative paths — so the same output names and split keys — as
    the whole scan: relpath is a scan column, not re-derived from the rows' common folder."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from pixelmill.inventory import scan

    root, kinds = collection
    table = scan(str(root), recursive=True)
    assert sorted(table.column("relpath").to_pylist()) == sorted(kinds)
    cats = table.filter(pc.starts_with(table.column("relpath"), "cats/"))
    pq.write_table(cats, tmp_path / "cats-only.parquet")
    units = plan_units(str(tmp_path / "cats-only.parquet"), str(tmp_path / "out"))
    want = sorted(k for k in kinds if k.startswith("cats/"))
    assert len(want) >= 2 and sorted(u.relpath for u in units) == want
    assert all(u.output.startswith(str(tmp_path / "out" / "cats")) for u in units)


def test_an_output_folder_inside_the_input_is_not_listed(collection):
    root, kinds = collection
    (root / "out" / "cats").mkdir(parents=True)
    (root / "out" / "cats" / "chelsea.jpg").write_bytes((root / "cats/chelsea.jpg").read_bytes())
    units = plan_units(str(root), str(root / "out"))
    assert sorted(u.relpath for u in units) == sorted(kinds)
    assert len(plan_units(str(root), None)) == len(kinds) + 1
