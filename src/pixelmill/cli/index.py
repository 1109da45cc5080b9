"""``pixelmill index``: build a nearest-neighbour index of feature vectors, query it, evaluate it."""

from __future__ import annotations

import json

import click

from pixelmill.cli._options import (
    json_option,
    overwrite_option,
    refuse_existing,
    refuse_folder,
    refuse_input,
    storage_option,
    workers_option,
)

__all__ = ["index"]


@click.group("index")
def index() -> None:
    """Search a collection by similarity (exact or HNSW nearest neighbours)."""


@index.command("build")
@click.argument("features")
@click.option("--out", required=True, metavar="DIR", help="Index directory to write.")
@click.option("--features", "columns", default=None, metavar="NAMES",
              help="Comma-separated vector columns (default: all vec_ columns).")
@click.option("--metric", type=click.Choice(["cosine", "l2"]), default="cosine",
              show_default=True, help="Distance between standardised vectors.")
@click.option("--kind", type=click.Choice(["auto", "exact", "hnsw"]), default="auto",
              show_default=True, help="auto: exact up to --exact-threshold vectors, else HNSW.")
@click.option("--exact-threshold", type=click.IntRange(1), default=50_000, show_default=True)
@click.option("--no-normalize", is_flag=True, help="Do not standardise the dimensions.")
@workers_option
@overwrite_option
@storage_option
def build(features, out, columns, metric, kind, exact_threshold, no_normalize, workers,
          overwrite, storage_options):
    """Index the vectors of FEATURES (a table from 'pixelmill learn extract')."""
    from pixelmill import storage
    from pixelmill.cli import staged_folder
    from pixelmill.learn.index import build_index

    so = storage.parse_storage_options(storage_options)
    refuse_input(out, "--out", files=(features,))
    if not overwrite:
        refuse_existing(out, so, field="--out")
    # an interrupted build leaves no half-written index, nor an earlier one mixed with new files
    with staged_folder(out, so, meta="index.json",
                       known=("index.json", "vectors.npy", "rows.parquet", "hnsw.bin")) as where:
        ix = build_index(features, where, columns=columns.split(",") if columns else None,
                         metric=metric, kind=kind, normalize=not no_normalize,
                         exact_threshold=exact_threshold, threads=workers, storage_options=so)
    click.echo(f"indexed {len(ix)} vectors of {ix.vectors.shape[1]} dimensions "
               f"({ix.kind}, {ix.metric})")
    click.echo(f"index: {out}")


@index.command("query")
@click.argument("index_dir", metavar="INDEX")
@click.argument("image")
@click.option("-k", type=click.IntRange(1), default=10, show_default=True,
              help="Neighbours to return.")
@click.option("--report", default=None, metavar="URL", help="Write an HTML page of the results.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --report file.")
@json_option
@storage_option
def query(index_dir, image, k, report, overwrite, as_json, storage_options):
    """The K images of INDEX nearest to IMAGE (its features extracted like the index's)."""
    from pixelmill import storage
    from pixelmill.images import read_image
    from pixelmill.learn.index import load_index

    so = storage.parse_storage_options(storage_options)
    if report:
        refuse_folder(report, so, field="--report", example="report.html")
        refuse_input(report, "--report", files=(image,), folders=(index_dir,))
        if not overwrite:
            refuse_existing(report, so, field="--report")
    ix = load_index(index_dir, so)
    hits = ix.query_image(read_image(image, storage_options=so), k)
    if report:
        from pixelmill.learn.html import write_query_report

        write_query_report(image, hits, report, so)
    if as_json:
        click.echo(json.dumps(hits))
        return
    for rank, hit in enumerate(hits, 1):
        label = f"  [{hit['label']}]" if hit.get("label") is not None else ""
        click.echo(f"{rank:3d}  {hit['distance']:.4f}  {hit['uri']}{label}")
    if report:
        click.echo(f"report: {report}")


@index.command("eval")
@click.argument("index_dir", metavar="INDEX")
@click.option("-k", type=click.IntRange(1), default=10, show_default=True)
@json_option
@storage_option
def eval_(index_dir, k, as_json, storage_options):
    """mAP@k, recall@k and precision@k of INDEX on its labelled rows.

    Queries are the test rows, searched among the other rows (leave-one-out without a split).
    recall@k is the fraction of queries with at least one same-label image among the k nearest.
    """
    from pixelmill import storage
    from pixelmill.learn.index import evaluate_index, load_index

    so = storage.parse_storage_options(storage_options)
    metrics = evaluate_index(load_index(index_dir, so), k)
    if as_json:
        click.echo(json.dumps(metrics))
        return
    click.echo(f"{metrics['queries']} queries ({metrics['mode']}, {metrics['kind']}): "
               f"mAP@{k} {metrics[f'mAP@{k}']:.4f}, recall@{k} {metrics[f'recall@{k}']:.4f}, "
               f"precision@{k} {metrics[f'precision@{k}']:.4f}")
