"""Each feature family separates the classes it is designed for, and not the others.

The generated sets vary exactly one property per class (colour, texture or edge orientation)
and randomise the rest; accuracy is 3-fold cross-validated logistic regression on the vectors.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pixelmill.learn.datasets import color_classes, orientation_classes, texture_classes
from pixelmill.ops import get_op

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

SETS = {
    "color": lambda: color_classes(24, seed=1),
    "texture": lambda: texture_classes(24, seed=2),
    "orientation": lambda: orientation_classes(24, seed=3),
}
_CACHE: dict = {}


def _accuracy(op: str, params: dict, dataset: str) -> float:
    if dataset not in _CACHE:
        _CACHE[dataset] = SETS[dataset]()
    images, labels = _CACHE[dataset]
    X = np.stack([get_op(op)(im, **params) for im in images])
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000))
    return float(cross_val_score(model, X, labels, cv=3).mean())


#: (op, params, the set it is designed for, a set it must not separate); chance is 0.2 / 0.25
CASES = [
    ("color_histogram", {"space": "hsv"}, "color", "orientation"),
    ("color_moments", {"space": "rgb"}, "color", "orientation"),
    ("lbp_histogram", {"P": 8, "R": 1.0}, "texture", "color"),
    ("glcm", {}, "texture", "orientation"),
    ("gradient_stats", {}, "orientation", "color"),
    ("hog", {"pixels_per_cell": [8, 8], "cells_per_block": [2, 2]}, "orientation", "color"),
]


@pytest.mark.parametrize(("op", "params", "designed", "control"), CASES,
                         ids=[c[0] for c in CASES])
def test_family_separates_its_classes(op, params, designed, control):
    assert _accuracy(op, params, designed) >= 0.9
    assert _accuracy(op, params, control) <= 0.6
