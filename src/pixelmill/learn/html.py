"""Self-contained HTML reports for evaluations and retrieval queries (thumbnails inlined)."""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np

from pixelmill import storage

__all__ = ["thumbnail_uri", "write_evaluation_report", "write_query_report"]

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;
text-align:right}th{background:#f4f4f4}.cm td{min-width:2.5em}
.grid{display:flex;flex-wrap:wrap;gap:12px}.grid figure{margin:0;width:140px;font-size:12px}
.grid img{width:128px;height:128px;object-fit:contain;image-rendering:pixelated;
background:#eee;border:1px solid #ccc}
"""


def thumbnail_uri(uri: str, size: int = 128,
                  storage_options: Mapping[str, Any] | None = None) -> str:
    """A ``data:`` URI of a PNG thumbnail of the image at ``uri`` ('' when unreadable)."""
    from pixelmill.images import read_image
    from pixelmill.learn.descriptors import to_rgb

    try:
        image = read_image(uri, storage_options=storage_options)
        if image.dtype.kind == "f":  # no-data pixels (NaN) shown black, not an error
            image = np.nan_to_num(image, nan=0.0, posinf=1.0, neginf=0.0)
        rgb = np.clip(np.rint(to_rgb(image) * 255), 0, 255).astype(np.uint8)
    except Exception:
        return ""
    scale = size / max(rgb.shape[:2])
    if scale < 1:
        rgb = cv2.resize(rgb, (max(1, round(rgb.shape[1] * scale)),
                               max(1, round(rgb.shape[0] * scale))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".png", rgb[:, :, ::-1])
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode() if ok else ""


def _page(title: str, body: str) -> bytes:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
            f"{body}</body></html>").encode()


def _confusion_table(classes: Sequence[str], confusion: Sequence[Sequence[int]]) -> str:
    peak = max((max(row) for row in confusion), default=1) or 1
    head = "".join(f"<th>{html.escape(c)}</th>" for c in classes)
    rows = []
    for c, row in zip(classes, confusion, strict=True):
        cells = []
        for j, v in enumerate(row):
            shade = int(255 - 180 * v / peak)
            colour = f"rgb({shade},{shade},255)" if classes[j] == c else f"rgb(255,{shade},{shade})"
            cells.append(f"<td style='background:{colour if v else '#fff'}'>{v}</td>")
        rows.append(f"<tr><th>{html.escape(c)}</th>{''.join(cells)}</tr>")
    return (f"<table class='cm'><tr><th>true \\ predicted</th>{head}</tr>{''.join(rows)}"
            "</table>")


def _figure(uri: str, caption: str, storage_options) -> str:
    src = thumbnail_uri(uri, storage_options=storage_options)
    return (f"<figure><img src='{src}' alt='{html.escape(uri)}'><figcaption>{caption}"
            f"<br><small>{html.escape(uri.rsplit('/', 1)[-1])}</small></figcaption></figure>")


def write_evaluation_report(evaluation: Any, out: str, meta: Mapping[str, Any],
                            storage_options: Mapping[str, Any] | None = None) -> str:
    """Write the HTML report of an :class:`~pixelmill.learn.evaluation.Evaluation`."""
    ev = evaluation
    summary = [("model", html.escape(f"{meta.get('model')} ({ev.model})")), ("split", ev.split),
               ("images", ev.n), ("accuracy", f"{ev.accuracy:.4f}"),
               ("macro F1", f"{ev.macro_f1:.4f}")]
    if ev.roc_auc is not None:
        summary.append(("ROC AUC", f"{ev.roc_auc:.4f}"))
    if ev.roc_auc_ovr is not None:
        summary.append(("ROC AUC (one-vs-rest, macro)", f"{ev.roc_auc_ovr:.4f}"))
    if meta.get("params"):
        summary.append(("hyperparameters", html.escape(str(meta["params"]))))
    body = ["<table>" + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in summary)
            + "</table>", "<h2>Confusion matrix</h2>",
            _confusion_table(ev.classes, ev.confusion), "<h2>Per class</h2><table><tr>"
            "<th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>"]
    for c, m in ev.per_class.items():
        body.append(f"<tr><th>{html.escape(c)}</th><td>{m['precision']:.3f}</td>"
                    f"<td>{m['recall']:.3f}</td><td>{m['f1']:.3f}</td><td>{m['support']}</td></tr>")
    body.append("</table>")
    body.append(f"<h2>Misclassified ({len(ev.misclassified)} shown, most confident first)</h2>"
                "<div class='grid'>")
    for item in ev.misclassified:
        caption = (f"true <b>{html.escape(item['label'])}</b>, predicted "
                   f"<b>{html.escape(item['predicted'])}</b> ({item['confidence']:.2f})")
        body.append(_figure(item["uri"], caption, storage_options))
    body.append("</div>")
    storage.write_atomic(out, _page("pixelmill evaluation", "".join(body)), storage_options)
    return out


def write_query_report(query_uri: str, hits: Sequence[Mapping[str, Any]], out: str,
                       storage_options: Mapping[str, Any] | None = None) -> str:
    """Write an HTML page showing a query image and its nearest neighbours."""
    body = ["<h2>Query</h2><div class='grid'>", _figure(query_uri, "query", storage_options),
            "</div><h2>Nearest neighbours</h2><div class='grid'>"]
    for rank, hit in enumerate(hits, 1):
        label = f" <b>{html.escape(str(hit['label']))}</b>" if hit.get("label") else ""
        body.append(_figure(hit["uri"], f"#{rank}{label} d={hit['distance']:.3f}",
                            storage_options))
    body.append("</div>")
    storage.write_atomic(out, _page("pixelmill retrieval", "".join(body)), storage_options)
    return out
