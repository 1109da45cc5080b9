"""Every scikit-learn model: search on val, refit, save with skops, load with trusted types only."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_classification

from pixelmill.errors import InvalidParameterError, UsageError
from pixelmill.learn.classifiers import (
    MODEL_NAMES,
    fit_classifier,
    load_sklearn,
    save_sklearn,
    search_grid,
)
from pixelmill.learn.evaluation import classification_metrics

TINY_GRIDS = {
    "linear_svm": {"C": [0.01, 1.0]},
    "rbf_svm": {"C": [1.0, 10.0], "gamma": [1.0]},
    "random_forest": {"n_estimators": [30], "min_samples_leaf": [1, 5]},
    "gradient_boosting": {"learning_rate": [0.1, 0.3], "max_iter": [30]},
    "logistic_regression": {"C": [0.01, 1.0]},
}


@pytest.fixture(scope="module")
def data():
    X, y = make_classification(n_samples=360, n_features=12, n_informative=6, n_classes=3,
                               random_state=0)
    labels = np.array(["a", "b", "c"])[y]
    return X[:240], labels[:240], X[240:300], labels[240:300], X[300:], labels[300:]


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_model_fits_searches_and_round_trips(name, data):
    X_tr, y_tr, X_va, y_va, X_te, y_te = data
    result = fit_classifier(name, X_tr, y_tr, X_va, y_va, grid=TINY_GRIDS[name], workers=1)
    assert len(result.candidates) == 2
    best = max(result.candidates, key=lambda c: c["val_accuracy"])
    assert result.params == best["params"] and result.val_score == best["val_accuracy"]
    proba = result.model.predict_proba(X_te)
    assert proba.shape == (60, 3) and np.allclose(proba.sum(1), 1)
    accuracy = classification_metrics(y_te, proba, result.model.classes_)[0]
    assert accuracy >= 0.6  # chance is 1/3
    loaded = load_sklearn(save_sklearn(result.model))
    np.testing.assert_array_equal(loaded.predict_proba(X_te), proba)


def test_two_class_metrics_against_scikit_learn():
    from sklearn.metrics import f1_score, roc_auc_score

    y = np.array(["neg", "pos", "pos", "neg", "pos", "neg"])
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.7, 0.3], [0.1, 0.9], [0.4, 0.6]])
    acc, macro_f1, per_class, confusion, auc, _ = classification_metrics(y, proba, ["neg", "pos"])
    pred = np.array(["neg", "pos"])[proba.argmax(1)]
    assert acc == pytest.approx(4 / 6)
    assert macro_f1 == pytest.approx(f1_score(y, pred, average="macro"))
    assert auc == pytest.approx(roc_auc_score(y == "pos", proba[:, 1]))
    assert confusion == [[2, 1], [1, 2]]
    assert per_class["pos"]["recall"] == pytest.approx(2 / 3)


@pytest.mark.parametrize("name,grid,message", [
    ("linear_svm", {"C": ["abc"]}, "C='abc': could not convert"),
    ("linear_svm", {"C": [1.0, -1]}, "C=-1: The 'C' parameter of LinearSVC"),
    ("rbf_svm", {"bogus": [1, 2]}, "bogus: not a hyperparameter of rbf_svm .valid: C, gamma"),
    ("random_forest", {"max_depth": [-3]}, "max_depth=-3: The 'max_depth' parameter"),
    ("random_forest", {"C": [1.0]}, "C: not a hyperparameter of random_forest"),
    ("gradient_boosting", {"learning_rate": ["x"]}, "learning_rate='x'"),
])
def test_a_wrong_grid_is_a_usage_error_before_fitting(name, grid, message):
    """`--grid C=abc` and `C=-1` ended in tracebacks, `bogus=1,2` was silently ignored."""
    with pytest.raises(InvalidParameterError, match=message) as info:
        search_grid(name, grid)
    assert info.value.field == "grid"


def test_bad_model_and_data():
    with pytest.raises(InvalidParameterError, match="model"):
        search_grid("deep_forest")
    with pytest.raises(UsageError, match="two classes"):
        fit_classifier("logistic_regression", np.zeros((4, 2)), np.array(["a"] * 4))
