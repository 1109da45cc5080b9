"""Evaluating a classifier on a split of a feature table: metrics, misclassified examples.

Metrics (scikit-learn's): accuracy, macro F1, per-class precision / recall / F1 / support, the
confusion matrix (rows = true class, columns = predicted, in ``classes`` order), ROC AUC for
two classes (the second class, in sorted order, is the positive one) and one-vs-rest macro ROC
AUC for more classes when every class occurs.

Macro F1 averages over the classes that occur in the evaluated rows' labels or predictions
(``f1_score(..., average="macro")`` without ``labels=``): a model class with no image in the
split and never predicted has no F1 to count. The per-class table and the confusion matrix
still list every model class (with support 0 where it is absent).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from pixelmill.errors import UsageError

__all__ = ["Evaluation", "check_split", "classification_metrics", "evaluate"]

_log = logging.getLogger(__name__)


@dataclass
class Evaluation:
    """What :func:`evaluate` measured."""

    split: str
    n: int
    accuracy: float
    macro_f1: float
    classes: list[str]
    per_class: dict[str, dict[str, float]]
    confusion: list[list[int]]
    roc_auc: float | None = None
    roc_auc_ovr: float | None = None
    misclassified: list[dict[str, Any]] = field(default_factory=list)
    model: str = ""
    report: str | None = None
    unlabelled: int = 0  #: rows of the split without a label, left out (they cannot be scored)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def classification_metrics(y_true: Sequence[str], proba: np.ndarray, classes: Sequence[str]):
    """(accuracy, macro_f1, per_class, confusion, roc_auc, roc_auc_ovr) of predictions.

    ``macro_f1`` is over the classes present in ``y_true`` or the predictions; ``per_class``
    and ``confusion`` cover every class of ``classes`` (then labels the model does not know).
    """
    from sklearn.exceptions import UndefinedMetricWarning
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        f1_score,
        precision_recall_fscore_support,
        roc_auc_score,
    )

    classes = [str(c) for c in classes]
    y_true = np.asarray([str(y) for y in y_true], dtype=object)
    y_pred = np.asarray(classes, dtype=object)[np.argmax(proba, axis=1)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        labels = list(classes) + sorted(set(y_true) - set(classes))
        precision, recall, f1, support = precision_recall_fscore_support(
            y_true, y_pred, labels=labels, zero_division=0)
        present = sorted(set(y_true) | set(y_pred))  # sklearn's own choice without labels=
        macro_f1 = float(f1_score(y_true, y_pred, labels=present, average="macro",
                                  zero_division=0))
    per_class = {c: {"precision": float(p), "recall": float(r), "f1": float(f),
                     "support": int(s)}
                 for c, p, r, f, s in zip(labels, precision, recall, f1, support, strict=True)}
    confusion = confusion_matrix(y_true, y_pred, labels=labels).tolist()
    roc_auc = roc_auc_ovr = None
    true_classes = set(y_true)
    if len(classes) == 2 and true_classes == set(classes):
        roc_auc = float(roc_auc_score(y_true == classes[1], proba[:, 1]))
    elif len(classes) > 2 and true_classes == set(classes):
        roc_auc_ovr = float(roc_auc_score(y_true, proba, labels=classes, multi_class="ovr",
                                          average="macro"))
    return (float(accuracy_score(y_true, y_pred)), macro_f1, per_class, confusion, roc_auc,
            roc_auc_ovr)


def check_split(model_meta: Mapping[str, Any], table_settings: Mapping[str, Any] | None,
                *, model: str, features: str, split: str, allow_other_split: bool = False,
                log: Any = None) -> None:
    """Refuse to score a table's ``split`` rows (test or val) when its split was made with
    other settings than the model's training split: its test rows may then include images the
    model was trained on, and every score would be inflated.

    ``allow_other_split`` scores anyway (with a warning line); when the model or the table has
    no recorded settings (made before they were recorded) nothing can be checked: one warning
    line. ``log`` receives the warning (default: this module's logger)."""
    if split not in ("test", "val"):  # train / all rows: nothing claims to be held out
        return
    warn = log if log is not None else _log.warning
    mine = model_meta.get("split")
    if not isinstance(mine, Mapping) or not isinstance(table_settings, Mapping):
        which = (f"the model {model}" if not isinstance(mine, Mapping) else features)
        warn(f"warning: {which} records no split settings (made before they were recorded, "
             f"or from a table without them): cannot check that the {split} rows of "
             f"{features} were held out of the model's training")
        return
    from pixelmill.learn.split import describe_split, same_split

    if same_split(mine, table_settings):
        return
    here = describe_split(table_settings, origin=False)
    problem = (f"{features}: its split ({here}) is not the one the model {model} was trained with"
               f" ({describe_split(mine)}), so its {split} rows "
               "may include images the model was trained on and the scores would be inflated")
    if allow_other_split:
        warn(f"warning: {problem}; scored anyway (--allow-other-split)")
        return
    raise UsageError(f"{problem}; evaluate on a table split as the model's was (learn extract "
                     "--ratios/--split-by/--salt), or pass --allow-other-split to score anyway")


def evaluate(
    model: str,
    features: str,
    *,
    split: str = "test",
    report: str | None = None,
    max_examples: int = 24,
    storage_options: Mapping[str, Any] | None = None,
    allow_other_split: bool = False,
    log: Any = None,
) -> Evaluation:
    """Evaluate the model directory ``model`` on the ``split`` rows of a feature table.

    Parameters
    ----------
    model : str
        A model directory written by :func:`pixelmill.learn.train`.
    features : str
        A feature table with the model's vector columns (CNN models: its uri column).
    split : {"test", "val", "train", "all"}
        Which rows to evaluate.
    report : str, optional
        Write an HTML report there (confusion matrix, per-class table, misclassified images).
    max_examples : int
        Misclassified examples kept (the most confident mistakes first).
    storage_options : mapping, optional
        fsspec options.
    allow_other_split : bool
        Score the ``test`` / ``val`` rows even when the table's split was made with other
        settings (ratios, split_by, salt) than the model's training split — refused otherwise
        (:func:`check_split`): those rows may include images the model was trained on.
    log : callable, optional
        Receives warning lines (default: the ``pixelmill.learn.evaluation`` logger).

    Returns
    -------
    Evaluation
    """
    from pixelmill.learn.features import load_features, read_table, table_split_settings
    from pixelmill.learn.models import load_model, read_images

    trained = load_model(model, storage_options)
    if trained.kind == "cnn":
        table = read_table(features, storage_options)
        check_split(trained.meta, table_split_settings(table, features), model=model,
                    features=features, split=split, allow_other_split=allow_other_split,
                    log=log)
        rows = [r for r in table.select([c for c in ("uri", "label", "split", "status")
                                         if c in table.column_names]).to_pylist()
                if r.get("status", "ok") == "ok" and (split == "all" or r.get("split") == split)]
        has_labels = "label" in table.column_names
        unlabelled = sum(r.get("label") is None for r in rows) if has_labels else 0
        if has_labels:  # an image without a label cannot be scored: left out, and counted
            rows = [r for r in rows if r.get("label") is not None]
        uris = [r["uri"] for r in rows]
        labels = [r.get("label") for r in rows]
        proba = trained.predict_proba_images(read_images(uris, storage_options)) if rows else None
    else:
        from pixelmill.errors import InvalidParameterError
        from pixelmill.learn.models import check_features

        try:
            fs = load_features(features, trained.meta["features"], storage_options)
        except InvalidParameterError as e:  # not the user's --features: the model's columns
            raise UsageError(f"{features}: the model {model} was trained on "
                             f"{', '.join(trained.meta['features'])}, which this table lacks "
                             f"({e})") from e
        check_features(trained.meta, fs.X.shape[1] if len(fs) else None, fs.pipeline, features,
                       fs.models)
        check_split(trained.meta, fs.split_settings, model=model, features=features,
                    split=split, allow_other_split=allow_other_split, log=log)
        mask = np.ones(len(fs), bool) if split == "all" else fs.split == split
        unlabelled = 0
        if fs.labels is not None:  # an image without a label cannot be scored: left out
            unlabelled = int((mask & ~fs.labelled).sum())
            mask &= fs.labelled
        uris = [u for u, m in zip(fs.uris, mask, strict=True) if m]
        labels = list(fs.labels[mask]) if fs.labels is not None else [None]
        proba = trained.predict_proba(fs.X[mask]) if mask.any() else None
    if proba is None or not uris:
        raise UsageError(f"{features}: no ok rows in the {split!r} split"
                         + (f" with a label ({unlabelled} without)" if unlabelled else ""))
    if any(label is None for label in labels):
        raise UsageError(f"{features}: evaluation needs a label column")
    acc, macro_f1, per_class, confusion, auc, auc_ovr = classification_metrics(
        labels, proba, trained.classes)
    best = proba.argmax(axis=1)
    wrong = [i for i in range(len(uris)) if trained.classes[best[i]] != str(labels[i])]
    wrong.sort(key=lambda i: -proba[i, best[i]])
    misclassified = [{"uri": uris[i], "label": str(labels[i]),
                      "predicted": trained.classes[best[i]],
                      "confidence": float(proba[i, best[i]])} for i in wrong[:max_examples]]
    result = Evaluation(split, len(uris), acc, macro_f1, list(per_class), per_class, confusion,
                        auc, auc_ovr, misclassified, model=str(model), unlabelled=unlabelled)
    if report:
        from pixelmill.learn.html import write_evaluation_report

        write_evaluation_report(result, report, trained.meta, storage_options)
        result.report = report
    return result
