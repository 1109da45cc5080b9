"""``pixelmill learn``: extract features, train, evaluate and predict.

Exit codes: 0 done; 3 (PARTIAL) some images invalid or failed (their manifest rows say why);
2 (USAGE) a wrong flag, field or file, nothing started; 4 (NO_INPUT) no images found.
"""

from __future__ import annotations

import json

import click

from pixelmill.cli._options import (
    engine_option,
    json_option,
    overwrite_option,
    refuse_existing,
    refuse_folder,
    refuse_input,
    storage_option,
    workers_option,
)

__all__ = ["learn"]


def _parse_grid(items: tuple[str, ...]) -> dict | None:
    import yaml

    from pixelmill.errors import InvalidParameterError
    from pixelmill.pipeline import _pipeline_loader

    if not items:
        return None
    grid = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not key or not values:
            raise InvalidParameterError(f"--grid: expected NAME=V1,V2,..., got {item!r}",
                                        field="grid")
        parsed = []
        for v in values.split(","):
            try:
                parsed.append(yaml.load(v, Loader=_pipeline_loader()))
            except yaml.YAMLError as e:
                what = str(getattr(e, "problem", None) or "not a value").strip()
                raise InvalidParameterError(
                    f"--grid {key.strip()}: cannot read {v!r:.60} ({what}); give plain values "
                    "separated by commas, e.g. C=0.1,1,10", field="grid") from None
        grid[key.strip()] = parsed
    return grid


def _job_lines(summary, what: str) -> None:
    click.echo(f"{summary.total} images: {summary.ok} ok, {summary.invalid} invalid, "
               f"{summary.failed} failed ({summary.elapsed:.1f} s, "
               f"{summary.images_per_s:.1f} images/s)")
    for key, reason in list(summary.reasons.items())[:10]:
        click.echo(f"  {key}: {reason}", err=True)
    click.echo(f"{what}: {summary.manifest}")


@click.group("learn")
def learn() -> None:
    """Learn from a labelled collection: features, classifiers, predictions."""


@learn.command("extract")
@click.argument("pipeline")
@click.argument("input")
@click.option("--out", required=True, metavar="URL", help="Feature table to write (.parquet).")
@click.option("--label-from", type=click.Choice(["parent", "partition"]), default=None,
              help="Label each image by its folder name or its label=... path part.")
@click.option("--ratios", default="7:1:2", show_default=True,
              help="train:val:test proportions of the stable split.")
@click.option("--split-by", type=click.Choice(["relpath", "uri", "content"]), default="relpath",
              show_default=True,
              help="What the split hash reads; content = each file's SHA-256 (duplicates and "
              "renamed files keep one split).")
@click.option("--salt", default="", help="Mixed into the split hash (another stable split).")
@click.option("--limit", type=int, default=None, help="Only the first N images.")
@click.option("--glob", "include", multiple=True, metavar="PATTERN", help="Only matching files.")
@click.option("--exclude", multiple=True, metavar="PATTERN", help="Skip matching files.")
@click.option("--resume", is_flag=True, help="Continue an interrupted extraction.")
@click.option("--overwrite", is_flag=True, help="Replace an existing table.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar and no summary.")
@engine_option
@workers_option
@storage_option
def extract(pipeline, input, out, label_from, ratios, split_by, salt, limit, include, exclude,
            resume, overwrite, quiet, engine, workers, storage_options):
    """Extract the feature vectors of PIPELINE's vector ops for every image of INPUT.

    Writes one row per image: key, uri, status, label, split, vec_<op> columns.
    """
    from pixelmill import storage
    from pixelmill.cli import exit_with
    from pixelmill.learn.features import extract as run_extract
    from pixelmill.pipeline import load_pipeline

    so = storage.parse_storage_options(storage_options)
    refuse_folder(out, so, field="--out", example="features.parquet")
    # read with --storage-option, as INPUT and --out are (an s3:// pipeline on an endpoint)
    pipeline = load_pipeline(pipeline, so)
    summary = run_extract(pipeline, input, out, label_from=label_from, ratios=ratios,
                          split_by=split_by, salt=salt, engine=engine, workers=workers,
                          storage_options=so, progress=not quiet, limit=limit,
                          include=list(include) or None, exclude=list(exclude) or None,
                          resume=resume, overwrite=overwrite)
    if not quiet:
        _job_lines(summary, "features")
    if summary.exit_code:
        exit_with(summary.exit_code)


@learn.command("train")
@click.argument("features", required=False)
@click.option("--model", "model_name", required=True,
              help="linear_svm, rbf_svm, random_forest, gradient_boosting, "
              "logistic_regression or cnn.")
@click.option("--out", required=True, metavar="DIR", help="Model directory to write.")
@click.option("--features", "columns", default=None, metavar="NAMES",
              help="Comma-separated vector columns (default: all vec_ columns).")
@click.option("--grid", multiple=True, metavar="NAME=V1,V2",
              help="Hyperparameter values to search on the val split (repeatable).")
@click.option("--images", default=None, metavar="URL",
              help="cnn: an image folder to train on (instead of a feature table).")
@click.option("--label-from", type=click.Choice(["parent", "partition"]), default="parent",
              show_default=True, help="cnn --images: where labels come from.")
@click.option("--size", type=click.IntRange(8, 512), default=32, show_default=True,
              help="cnn: input size in pixels.")
@click.option("--channels", default="16,32,64", show_default=True,
              help="cnn: filters of each stage.")
@click.option("--gray", is_flag=True, help="cnn: read images as gray.")
@click.option("--dropout", type=click.FloatRange(0, 0.95), default=0.3, show_default=True)
@click.option("--epochs", type=click.IntRange(1), default=30, show_default=True)
@click.option("--patience", type=click.IntRange(1), default=5, show_default=True,
              help="cnn: epochs without a better val accuracy before stopping.")
@click.option("--batch-size", type=click.IntRange(2), default=64, show_default=True)
@click.option("--augment", default="crop,jitter", show_default=True,
              help="cnn: any of crop, jitter, flip ('' for none).")
@click.option("--device", default="auto", show_default=True, help="cnn: auto, cpu or cuda.")
@workers_option
@json_option
@overwrite_option
@storage_option
def train(features, model_name, out, columns, grid, images, label_from, size, channels, gray,
          dropout, epochs, patience, batch_size, augment, device, workers, as_json, overwrite,
          storage_options):
    """Train a classifier on FEATURES (a table from 'pixelmill learn extract')."""
    from pixelmill import storage
    from pixelmill.errors import InvalidParameterError
    from pixelmill.learn.cnn import CNNConfig
    from pixelmill.learn.models import train as run_train

    so = storage.parse_storage_options(storage_options)
    try:
        stages = tuple(int(c) for c in channels.split(",") if c.strip())
    except ValueError:
        stages = ()
    if not stages or any(c < 1 for c in stages):
        raise InvalidParameterError(f"--channels: expected numbers like 16,32,64, got {channels!r}",
                                    field="channels")
    augments = tuple(a.strip() for a in augment.split(",") if a.strip())
    bad = [a for a in augments if a not in ("crop", "jitter", "flip")]
    if bad:
        raise InvalidParameterError(f"--augment: unknown {bad[0]!r} (valid: crop, jitter, flip)",
                                    field="augment")
    if features:
        refuse_input(out, "--out", files=(features,))
    if not overwrite:
        refuse_existing(out, so, field="--out")
    if model_name == "cnn":  # a device torch cannot use fails here, before any image is read
        from pixelmill.devices import resolve_device

        resolve_device(device, field="--device")
    config = CNNConfig(input_size=size, in_channels=1 if gray else 3, channels=stages,
                       dropout=dropout, epochs=epochs, patience=patience, batch_size=batch_size,
                       augment=augments, device=device)
    # progress lines and warnings go to stderr: --json (stdout) keeps them
    log = lambda line: click.echo(line, err=True)  # noqa: E731
    from pixelmill.cli import staged_folder

    # an interrupted run leaves no half-written model, nor an earlier one mixed with new files
    with staged_folder(out, so, meta="model.json",
                       known=("model.json", "model.skops", "weights.safetensors",
                              "report.html")) as where:
        model = run_train(features, model_name, where, images=images, label_from=label_from,
                          columns=columns.split(",") if columns else None,
                          grid=_parse_grid(grid), cnn_config=config, workers=workers,
                          storage_options=so, log=log)
    meta = model.meta
    if as_json:
        click.echo(json.dumps({k: meta.get(k) for k in ("model", "classes", "params",
                                                         "val_accuracy", "n_train")}))
        return
    val = meta.get("val_accuracy")
    click.echo(f"trained {meta['model']} on {meta['n_train']} images, {len(meta['classes'])} "
               f"classes; params {meta.get('params') or '-'}; val accuracy "
               f"{'-' if val is None else f'{val:.4f}'}")
    click.echo(f"model: {out}")


@learn.command("evaluate")
@click.argument("model")
@click.argument("features")
@click.option("--split", type=click.Choice(["test", "val", "train", "all"]), default="test",
              show_default=True, help="Rows to evaluate.")
@click.option("--report", default=None, metavar="URL",
              help="HTML report to write (default: MODEL/report.html).")
@click.option("--no-report", is_flag=True, help="Write no HTML report.")
@click.option("--overwrite", is_flag=True,
              help="Replace an existing --report file (MODEL/report.html is always renewed).")
@click.option("--allow-other-split", is_flag=True,
              help="Score the test/val rows even when FEATURES was split with other settings "
              "(ratios, split-by, salt) than the model's training table (refused otherwise: "
              "those rows may include images the model was trained on).")
@json_option
@storage_option
def evaluate(model, features, split, report, no_report, overwrite, allow_other_split, as_json,
             storage_options):
    """Evaluate MODEL on a split of FEATURES: accuracy, macro F1, per class, confusion matrix."""
    from pixelmill import storage
    from pixelmill.learn.evaluation import evaluate as run_evaluate

    so = storage.parse_storage_options(storage_options)
    if report is not None and not no_report:
        refuse_folder(report, so, field="--report", example="report.html")
        own = storage.same_location(report, storage.join(model, "report.html"))
        refuse_input(report, "--report", files=(features,), folders=() if own else (model,))
        if not overwrite:
            refuse_existing(report, so, field="--report")
    if report is None and not no_report:
        report = storage.join(model, "report.html")
    ev = run_evaluate(model, features, split=split, report=None if no_report else report,
                      storage_options=so, allow_other_split=allow_other_split,
                      log=lambda line: click.echo(line, err=True))
    if as_json:
        click.echo(json.dumps(ev.to_dict()))
        return
    auc = (f", ROC AUC {ev.roc_auc:.4f}" if ev.roc_auc is not None
           else f", one-vs-rest macro ROC AUC {ev.roc_auc_ovr:.4f}" if ev.roc_auc_ovr is not None
           else "")
    click.echo(f"{ev.split}: {ev.n} images, accuracy {ev.accuracy:.4f}, macro F1 "
               f"{ev.macro_f1:.4f}{auc}")
    if ev.unlabelled:
        click.echo(f"({ev.unlabelled} image{'s' if ev.unlabelled > 1 else ''} without a label "
                   "left out)")
    width = max(5, *(len(c) for c in ev.classes))
    click.echo(f"{'class':<{width}}  precision  recall  support")
    for c, m in ev.per_class.items():
        click.echo(f"{c:<{width}}  {m['precision']:9.3f}  {m['recall']:6.3f}  {m['support']:7d}")
    click.echo("confusion (rows true, columns predicted):")
    for c, row in zip(ev.classes, ev.confusion, strict=True):
        click.echo(f"  {c:<{width}} " + " ".join(f"{v:4d}" for v in row))
    if ev.report:
        click.echo(f"report: {ev.report}")


@learn.command("predict")
@click.argument("model")
@click.argument("input")
@click.option("--out", required=True, metavar="URL", help="Predictions manifest (.parquet).")
@click.option("--label-from", type=click.Choice(["parent", "partition"]), default=None,
              help="Also record each image's label (to compare).")
@click.option("--limit", type=int, default=None, help="Only the first N images.")
@click.option("--overwrite", is_flag=True, help="Replace an existing manifest.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar and no summary.")
@engine_option
@workers_option
@storage_option
def predict(model, input, out, label_from, limit, overwrite, resume, quiet, engine, workers,
            storage_options):
    """Classify every image of INPUT with MODEL; write predicted, confidence, prob_<class>."""
    from pixelmill import storage
    from pixelmill.cli import exit_with
    from pixelmill.learn.prediction import predict as run_predict

    so = storage.parse_storage_options(storage_options)
    refuse_folder(out, so, field="--out", example="predictions.parquet")
    summary = run_predict(model, input, out, engine=engine, workers=workers,
                          label_from=label_from, storage_options=so, progress=not quiet,
                          limit=limit, overwrite=overwrite, resume=resume)
    if not quiet:
        _job_lines(summary, "predictions")
    if summary.exit_code:
        exit_with(summary.exit_code)
