"""scikit-learn classifiers on feature vectors, tuned on the validation split, saved without pickle.

Every model is ``StandardScaler -> estimator``. Hyperparameters are searched over a small grid
(or the caller's): each candidate is fitted on the ``train`` rows and scored (accuracy) on the
``val`` rows; the best one is refitted on train + val. SVMs get probabilities from a sigmoid
(Platt) calibration, ``CalibratedClassifierCV(..., ensemble=False)``.

Models are stored with skops (``model.skops``, no pickle); loading refuses any type outside
:data:`TRUSTED_TYPES` beyond what skops trusts by default.
"""

from __future__ import annotations

import itertools
import re
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pixelmill.errors import InvalidParameterError, UsageError

__all__ = ["MODEL_NAMES", "TRUSTED_TYPES", "SearchResult", "fit_classifier", "load_sklearn",
           "save_sklearn", "search_grid"]

MODEL_NAMES = ("linear_svm", "rbf_svm", "random_forest", "gradient_boosting",
               "logistic_regression")

#: types (beyond skops' defaults) that a saved model may contain
TRUSTED_TYPES = (
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
)

#: default search grids (``gamma`` is relative to 1 / n_features, sklearn's "scale" on
#: standardised features)
DEFAULT_GRIDS: dict[str, dict[str, list[Any]]] = {
    "linear_svm": {"C": [0.01, 0.1, 1.0, 10.0]},
    "rbf_svm": {"C": [1.0, 10.0, 100.0], "gamma": [0.3, 1.0, 3.0]},
    "random_forest": {"n_estimators": [200], "max_features": ["sqrt", 0.25],
                      "min_samples_leaf": [1, 3]},
    "gradient_boosting": {"learning_rate": [0.05, 0.15], "max_leaf_nodes": [15, 31]},
    "logistic_regression": {"C": [0.01, 0.1, 1.0, 10.0]},
}


@dataclass
class SearchResult:
    """The fitted model, the chosen hyperparameters and every candidate's validation score."""

    model: Any
    params: dict[str, Any]
    val_score: float | None
    candidates: list[dict[str, Any]] = field(default_factory=list)
    fit_seconds: float = 0.0


def _estimator(name: str, params: Mapping[str, Any], n_features: int, workers: int | None):
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import SVC, LinearSVC

    p = dict(params)
    if name == "linear_svm":
        return LinearSVC(C=float(p.get("C", 1.0)), max_iter=20000, random_state=0)
    if name == "rbf_svm":
        gamma = p.get("gamma", 1.0)
        gamma = gamma if isinstance(gamma, str) else float(gamma) / max(n_features, 1)
        return SVC(C=float(p.get("C", 1.0)), gamma=gamma, kernel="rbf", random_state=0)
    if name == "random_forest":
        return RandomForestClassifier(random_state=0, n_jobs=workers, **p)
    if name == "gradient_boosting":
        return HistGradientBoostingClassifier(random_state=0, max_iter=int(p.pop("max_iter", 200)),
                                              early_stopping=False, **p)
    if name == "logistic_regression":
        return LogisticRegression(C=float(p.get("C", 1.0)), max_iter=5000)
    raise InvalidParameterError(
        f"--model: unknown model {name!r} (valid: {', '.join(MODEL_NAMES)}, cnn)", field="model")


def _pipeline(estimator):
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    return Pipeline([("scale", StandardScaler()), ("clf", estimator)])


def search_grid(name: str, grid: Mapping[str, Sequence[Any]] | None = None) -> list[dict]:
    """Every combination of the grid's values (the default grid of ``name`` when None)."""
    if name not in DEFAULT_GRIDS:
        _estimator(name, {}, 1, None)  # raises with the valid names
    grid = dict(DEFAULT_GRIDS[name] if grid is None else grid)
    keys = sorted(grid)
    candidates = [dict(zip(keys, values, strict=True))
                  for values in itertools.product(*(_values(grid[k]) for k in keys))]
    _check_grid(name, keys, candidates)
    return candidates


_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _values(values: Any) -> list[Any]:
    """A grid's values, numbers written as text (``1e-2``: YAML 1.1, which reads
    ``--grid``, wants a dot in exponent notation) read as numbers."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        values = [values]
    out = []
    for v in values:
        if isinstance(v, str) and _NUMBER.fullmatch(v.strip()):
            number = float(v)
            v = int(number) if number.is_integer() and "." not in v and "e" not in v.lower() \
                else number
        out.append(v)
    return out


#: the hyperparameters of each model that a grid may set (the others are fixed by pixelmill)
_FIXED = {"random_state", "n_jobs", "early_stopping", "verbose", "warm_start"}


def _grid_keys(name: str) -> list[str]:
    if name in ("linear_svm", "logistic_regression"):
        return ["C"]
    if name == "rbf_svm":
        return ["C", "gamma"]
    return sorted(set(_estimator(name, {}, 1, None).get_params()) - _FIXED)


def _check_grid(name: str, keys: Sequence[str], candidates: Sequence[Mapping[str, Any]]) -> None:
    """Unknown names and values sklearn would refuse are usage errors, before any fitting."""
    allowed = _grid_keys(name)
    for key in keys:
        if key not in allowed:
            raise InvalidParameterError(
                f"--grid {key}: not a hyperparameter of {name} (valid: {', '.join(allowed)})",
                field="grid")
    for params in candidates:
        try:
            _estimator(name, params, 1, None)._validate_params()
        except (ValueError, TypeError) as e:  # sklearn's InvalidParameterError is both
            shown = ", ".join(f"{k}={v!r}" for k, v in params.items())
            raise InvalidParameterError(f"--grid {shown}: {e}", field="grid") from e


def _final(name: str, params, n_features, workers, y):
    from sklearn.calibration import CalibratedClassifierCV

    est = _estimator(name, params, n_features, workers)
    if name in ("linear_svm", "rbf_svm"):
        smallest = int(min(np.unique(y, return_counts=True)[1]))
        if smallest < 2:
            values, counts = np.unique(y, return_counts=True)
            lonely = ", ".join(repr(str(v)) for v in values[counts < 2][:10])
            raise UsageError("an SVM needs at least 2 training images of every class "
                             f"(for its probability calibration); one image only: {lonely} "
                             "(train + val rows)")
        est = CalibratedClassifierCV(est, ensemble=False, cv=min(5, smallest))
    return _pipeline(est)


def fit_classifier(
    name: str,
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    *,
    grid: Mapping[str, Sequence[Any]] | None = None,
    workers: int | None = None,
    refit_on_val: bool = True,
) -> SearchResult:
    """Search ``grid`` on the validation rows, refit the best on train (+ val) and return it.

    Parameters
    ----------
    name : str
        One of :data:`MODEL_NAMES`.
    X_train, y_train : ndarray
        Training vectors and labels.
    X_val, y_val : ndarray or None
        Validation rows: every candidate (also a lone one) is scored on them; without them the
        grid's first candidate is used, unscored.
    grid : mapping or None
        Hyperparameter values to try (default :data:`DEFAULT_GRIDS`).
    workers : int or None
        Threads for models that use them (random forest, and the BLAS/OpenMP pools of all;
        None leaves the pools as they are).
    refit_on_val : bool
        Refit the chosen model on train + val.

    Returns
    -------
    SearchResult
    """
    import contextlib

    from sklearn.exceptions import ConvergenceWarning
    from threadpoolctl import threadpool_limits

    t0 = time.perf_counter()
    if len(np.unique(y_train)) < 2:
        raise UsageError("training needs at least two classes in the train split")
    candidates = search_grid(name, grid)
    n_features = X_train.shape[1]
    scores: list[dict[str, Any]] = []
    best, best_score = candidates[0], None
    pools = threadpool_limits(workers) if workers else contextlib.nullcontext()
    with warnings.catch_warnings(), pools:
        warnings.simplefilter("ignore", ConvergenceWarning)
        # one candidate is scored too: its val accuracy is what model.json and the CLI report
        if X_val is not None and y_val is not None and len(y_val) > 0:
            for params in candidates:
                model = _pipeline(_estimator(name, params, n_features, workers))
                model.fit(X_train, y_train)
                score = float(np.mean(model.predict(X_val) == y_val))
                scores.append({"params": params, "val_accuracy": score})
                if best_score is None or score > best_score:
                    best, best_score = params, score
        if refit_on_val and X_val is not None and y_val is not None and len(y_val) > 0:
            X_fit, y_fit = np.concatenate([X_train, X_val]), np.concatenate([y_train, y_val])
        else:
            X_fit, y_fit = X_train, y_train
        model = _final(name, best, n_features, workers, y_fit)
        model.fit(X_fit, y_fit)
    return SearchResult(model, best, best_score, scores, time.perf_counter() - t0)


def save_sklearn(model: Any) -> bytes:
    """A fitted model as skops bytes (no pickle)."""
    import skops.io as sio

    return sio.dumps(model)


def load_sklearn(data: bytes, classes: Sequence[str] | None = None) -> Any:
    """Load skops bytes, refusing types outside skops' defaults and :data:`TRUSTED_TYPES`.

    Parameters
    ----------
    data : bytes
        The content of a ``model.skops`` file.
    classes : sequence of str, optional
        The classes ``model.json`` lists: the loaded model must predict exactly these.

    Returns
    -------
    sklearn.pipeline.Pipeline
        A fitted classifier with ``predict_proba``.

    Raises
    ------
    UsageError
        Bytes that are not a skops file, hold untrusted types, or do not hold a fitted
        classifier (of ``classes``). Nothing is unpickled: skops reads its own JSON schema.
    """
    import skops.io as sio

    try:
        untrusted = sio.get_untrusted_types(data=data)
    except Exception as e:  # a truncated or foreign file: zipfile, JSON or schema errors
        raise UsageError(f"not a skops model file ({type(e).__name__}: {e})") from e
    unknown = [t for t in untrusted if t not in TRUSTED_TYPES]
    if unknown:
        raise UsageError(f"model file holds untrusted types {unknown}; refusing to load it")
    try:
        model = sio.loads(data, trusted=list(untrusted))
    except Exception as e:  # a skops file whose content does not rebuild
        raise UsageError(f"the skops model cannot be rebuilt ({type(e).__name__}: {e})") from e
    if not callable(getattr(model, "predict_proba", None)):
        raise UsageError(f"holds a {type(model).__name__}, not a classifier with probabilities")
    if classes is not None:
        fitted = [str(c) for c in getattr(model, "classes_", [])]
        if fitted != [str(c) for c in classes]:
            raise UsageError(f"the classifier predicts {fitted[:10]}, model.json lists "
                             f"{list(classes)[:10]}")
    return model
