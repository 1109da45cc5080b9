"""The HTML report: counts, reasons, inline thumbnails and figures, self-contained."""

from __future__ import annotations

import re

from pixelmill.jobs import run
from pixelmill.manifest import ManifestWriter
from pixelmill.report import build_report, measurement_columns


def test_report_of_a_job(collection, tmp_path, engine, blur_pipeline):
    root, _kinds = collection
    out = tmp_path / "out"
    summary = run(blur_pipeline, str(root), str(out), engine=engine, progress=False)
    page = (out / "report.html").read_text()
    assert summary.report.endswith("report.html")
    assert re.search(r"id='count-ok'>5<", page) and re.search(r"id='count-invalid'>2<", page)
    for bad in ("not_an_image.jpg", "empty.png"):
        assert bad in page
    # 5 before/after pairs, inlined; no external references
    assert page.count("alt='before'") == 5 and page.count("alt='after'") == 5
    assert "alt='per-stage timings' src='data:image/png;base64," in page
    assert not re.search(r"src='(?!data:)", page)
    assert "images/s" in page


def test_a_named_manifest_gets_a_report_of_its_name(collection, tmp_path, engine,
                                                    blur_pipeline):
    """`--manifest may.parquet` wrote `report.html` beside it, replacing an unrelated report
    there without --overwrite; it is now `may.report.html` (a job's own `manifest.parquet`
    keeps `report.html`)."""
    from pixelmill.report import default_report_uri

    root, _ = collection
    keep = tmp_path / "report.html"
    keep.write_text("a report made earlier")
    summary = run(blur_pipeline, str(root), str(tmp_path / "out"), engine=engine,
                  manifest=str(tmp_path / "may.parquet"), progress=False)
    assert keep.read_text() == "a report made earlier"
    assert summary.report == str(tmp_path / "may.report.html")
    assert "count-ok" in (tmp_path / "may.report.html").read_text()
    assert default_report_uri("s3://b/run/manifest.parquet") == "s3://b/run/report.html"
    assert default_report_uri("s3://b/run/may.parquet") == "s3://b/run/may.report.html"


def test_histograms_of_measurements(tmp_path):
    uri = str(tmp_path / "m.parquet")
    with ManifestWriter(uri) as w:
        for i in range(20):
            w.append({"key": f"k{i}", "uri": f"/none/{i}.png", "status": "ok", "width": 10,
                      "sharpness": float(i), "blurry": i < 5, "t_read": 0.001})
        w.append({"key": "bad", "uri": "/none/bad.png", "status": "failed",
                  "reason": "pipeline: ValueError: <b>escaped</b>"})
    rows = [{"sharpness": 1.0, "blurry": True, "width": 3, "t_read": 0.1, "vec_x": [1.0]}]
    assert measurement_columns(rows) == ["sharpness", "blurry"]
    page = build_report(uri)
    assert "alt='measurement histograms' src='data:image/png;base64," in page
    assert "&lt;b&gt;escaped&lt;/b&gt;" in page and "<b>escaped" not in page


def test_thumbnail_of_a_float_image_with_nan_and_inf(tmp_path):
    """Non-finite pixels made the report's scaling warn (nanmin = -inf) and the thumbnail
    all one value; now the finite range is stretched and NaN/±inf are clipped to its ends."""
    import base64
    import warnings

    import cv2
    import numpy as np
    import tifffile

    from pixelmill.report import _thumb

    img = np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64)
    img[0, :3] = [np.nan, np.inf, -np.inf]
    tifffile.imwrite(tmp_path / "f.tif", img)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        uri = _thumb(str(tmp_path / "f.tif"), {})
    jpeg = base64.b64decode(uri.split(",", 1)[1])
    thumb = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert thumb[-1, -1] > 240 and 110 < thumb[32, 0] < 145  # the ramp survives


def test_thumbnail_of_a_gray_alpha_image(tmp_path):
    """A 2-channel (gray + alpha) output crashed the report in cvtColor: `pixelmill run`
    exited 1 with a traceback after writing its manifest."""
    import numpy as np
    from PIL import Image

    from pixelmill.report import _thumb

    la = np.dstack([np.full((40, 50), 200, np.uint8), np.full((40, 50), 255, np.uint8)])
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    assert _thumb(str(tmp_path / "la.png"), {}).startswith("data:image/jpeg;base64,")
