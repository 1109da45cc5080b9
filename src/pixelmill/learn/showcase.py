"""The learning part of ``make demo``: digits -> HOG -> RBF SVM, a report, a retrieval query."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

__all__ = ["demo"]

PIPELINE = [{"op": "hog", "size": [32, 32], "pixels_per_cell": [8, 8], "cells_per_block": [2, 2]}]


def demo(out_dir: str | Path, engine: Any = "local") -> dict[str, Any]:
    """Train and evaluate a classifier on scikit-learn's digits and query a retrieval index.

    Writes ``<out_dir>/learn/``: the digits as PNGs, ``features.parquet``, ``model/`` with its
    ``report.html``, ``index/`` and ``query.html``; prints what it did and where the reports are.

    Parameters
    ----------
    out_dir : str or Path
        Folder to write into.
    engine : str or Engine
        Where the feature extraction runs (``local``, ``dask``, ``spark`` or an open engine).

    Returns
    -------
    dict
        accuracy, macro_f1, recall@10, mAP@10 and the report paths.
    """
    from pixelmill.images import read_image
    from pixelmill.learn.datasets import write_digits
    from pixelmill.learn.evaluation import evaluate
    from pixelmill.learn.features import extract
    from pixelmill.learn.html import write_query_report
    from pixelmill.learn.index import build_index, evaluate_index
    from pixelmill.learn.models import train

    root = Path(out_dir) / "learn"
    images = root / "digits"
    t0 = time.perf_counter()
    if not images.exists():
        write_digits(str(images))
    features = str(root / "features.parquet")
    summary = extract(PIPELINE, str(images), features, label_from="parent", engine=engine,
                      overwrite=True)
    print(f"learn: HOG features of {summary.ok} digit images ({summary.elapsed:.1f} s) "
          f"-> {features}")
    model_dir = str(root / "model")
    model = train(features, "rbf_svm", model_dir, grid={"C": [1.0, 10.0], "gamma": [1.0]})
    ev = evaluate(model_dir, features, report=os.path.join(model_dir, "report.html"))
    print(f"learn: RBF SVM {model.meta['params']} on {model.meta['n_train']} train images; "
          f"test accuracy {ev.accuracy:.4f}, macro F1 {ev.macro_f1:.4f} on {ev.n} images")
    print(f"learn: evaluation report file://{os.path.abspath(ev.report)}")
    index = build_index(features, str(root / "index"))
    metrics = evaluate_index(index, k=10)
    print(f"learn: retrieval index of {len(index)} vectors ({index.kind}); recall@10 "
          f"{metrics['recall@10']:.4f}, mAP@10 {metrics['mAP@10']:.4f}")
    query = next(r["uri"] for r in index.rows if r["split"] == "test")
    hits = index.query_image(read_image(query), k=6)
    print(f"learn: nearest neighbours of {os.path.relpath(query, root)}:")
    for rank, hit in enumerate(hits, 1):
        print(f"  {rank}. {hit['distance']:.3f}  label {hit['label']}  "
              f"{os.path.relpath(hit['uri'], root)}")
    page = write_query_report(query, hits, str(root / "query.html"))
    print(f"learn: query report file://{os.path.abspath(page)} "
          f"({time.perf_counter() - t0:.1f} s in all)")
    return {"accuracy": ev.accuracy, "macro_f1": ev.macro_f1, "recall@10": metrics["recall@10"],
            "mAP@10": metrics["mAP@10"], "report": ev.report, "query_report": page}
