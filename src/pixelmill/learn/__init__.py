"""Learning from image collections: features, a stable split, classifiers, CNNs, retrieval.

>>> from pixelmill import learn
>>> learn.extract("features.yaml", "photos/", "features.parquet", label_from="parent")  # doctest: +SKIP
>>> learn.train("features.parquet", "rbf_svm", "model/")  # doctest: +SKIP
>>> learn.evaluate("model/", "features.parquet", report="report.html").accuracy  # doctest: +SKIP
>>> learn.build_index("features.parquet", "index/").query_image(image, k=10)  # doctest: +SKIP

Submodules are named apart from the functions they define (``prediction`` holds ``predict``,
``showcase`` holds ``demo``) so importing one never shadows a function here.
Names are loaded lazily so ``import pixelmill.learn`` does not import torch or scikit-learn.
"""

from __future__ import annotations

from pixelmill._lazy import lazy_exports

_API = {
    "extract": "pixelmill.learn.features",
    "load_features": "pixelmill.learn.features",
    "FeatureSet": "pixelmill.learn.features",
    "assign_split": "pixelmill.learn.split",
    "split_of": "pixelmill.learn.split",
    "train": "pixelmill.learn.models",
    "load_model": "pixelmill.learn.models",
    "TrainedModel": "pixelmill.learn.models",
    "fit_classifier": "pixelmill.learn.classifiers",
    "MODEL_NAMES": "pixelmill.learn.classifiers",
    "CNNConfig": "pixelmill.learn.cnn",
    "train_cnn": "pixelmill.learn.cnn",
    "evaluate": "pixelmill.learn.evaluation",
    "Evaluation": "pixelmill.learn.evaluation",
    "predict": "pixelmill.learn.prediction",
    "build_index": "pixelmill.learn.index",
    "load_index": "pixelmill.learn.index",
    "evaluate_index": "pixelmill.learn.index",
    "VectorIndex": "pixelmill.learn.index",
    "demo": "pixelmill.learn.showcase",
}

__all__ = sorted(_API)


__getattr__, __dir__ = lazy_exports(__name__, _API)
