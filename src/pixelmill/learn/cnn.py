"""A small convolutional classifier in PyTorch, trained from scratch; saved as safetensors.

The network is ``stages × (conv 3×3 -> batch norm -> ReLU [-> conv -> BN -> ReLU]) -> max pool``,
then global average pooling (the *embedding*), dropout and a linear layer. Images are read
relative to their dtype's white, converted to RGB (or gray), resized to ``input_size`` and
standardised with the training set's per-channel mean and std (stored with the weights).

Training: Adam, augmentation (random crop after reflect padding, brightness/contrast jitter,
optional horizontal flip), early stopping on validation accuracy (the best epoch's weights are
kept). CPU by default, CUDA when present (``device="auto"``). Weights are stored as
``weights.safetensors`` plus ``model.json`` (no pickle).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import cv2
import numpy as np

__all__ = ["CNNConfig", "CNNModel", "build_net", "preprocess", "train_cnn"]


@dataclass
class CNNConfig:
    """Architecture and training settings of a :class:`CNNModel`."""

    input_size: int = 32
    in_channels: int = 3
    channels: tuple[int, ...] = (16, 32, 64)
    convs_per_stage: int = 1
    dropout: float = 0.3
    epochs: int = 30
    patience: int = 5
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    augment: tuple[str, ...] = ("crop", "jitter")  #: any of crop, jitter, flip
    seed: int = 0
    device: str = "auto"

    def check(self) -> None:
        """Settings the network cannot be built or trained with are usage errors."""
        from pixelmill.errors import InvalidParameterError

        stages = len(self.channels)
        if not stages or any(int(c) < 1 for c in self.channels):
            raise InvalidParameterError(
                f"--channels: expected positive numbers like 16,32,64, got {self.channels!r}",
                field="channels")
        if self.input_size < 2**stages:  # every stage halves the image
            raise InvalidParameterError(
                f"--size {self.input_size}: {stages} stages (--channels) halve the image "
                f"{stages} times; give --size >= {2**stages} or fewer stages", field="size")
        if self.in_channels not in (1, 3):
            raise InvalidParameterError(
                f"in_channels: expected 1 (gray) or 3, got {self.in_channels!r}",
                field="in_channels")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CNNConfig:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        for key in ("channels", "augment"):
            if key in known:
                known[key] = tuple(known[key])
        return cls(**known)


def build_net(config: CNNConfig, n_classes: int):
    """The ``torch.nn.Module`` for ``config`` with ``n_classes`` outputs."""
    import torch
    from torch import nn

    class SmallCNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            layers: list[nn.Module] = []
            c_in = config.in_channels
            for c_out in config.channels:
                for _ in range(config.convs_per_stage):
                    layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                               nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
                    c_in = c_out
                layers.append(nn.MaxPool2d(2))
            self.features = nn.Sequential(*layers)
            self.dropout = nn.Dropout(config.dropout)
            self.head = nn.Linear(c_in, n_classes)

        def embed(self, x: torch.Tensor) -> torch.Tensor:
            return self.features(x).mean(dim=(2, 3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.dropout(self.embed(x)))

    return SmallCNN()


def preprocess(image: np.ndarray, config: CNNConfig) -> np.ndarray:
    """One image -> C×S×S float32 in [0, 1] (before standardisation)."""
    from pixelmill.learn.descriptors import check_finite, to_gray, to_rgb

    check_finite(image)  # before the resize, which could step over a NaN pixel
    size = config.input_size
    if image.shape[0] != size or image.shape[1] != size:  # resize first: cheap on big images
        shrink = image.shape[0] > size and image.shape[1] > size
        channels = image.shape[2] if image.ndim == 3 else 1
        src = image if channels <= 4 else image[:, :, :3]
        image = cv2.resize(np.ascontiguousarray(src), (size, size),
                           interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        if channels == 1 and image.ndim == 2 and src.ndim == 3:
            image = image[:, :, None]
    img = to_gray(image)[:, :, None] if config.in_channels == 1 else to_rgb(image)
    return np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32)


def _device(name: str):
    import torch

    from pixelmill.devices import resolve_device

    return torch.device(resolve_device(name))


def _augment(x, config: CNNConfig, gen):
    import torch
    import torch.nn.functional as F

    n = x.shape[0]
    if "crop" in config.augment:
        pad = max(1, config.input_size // 8)
        padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
        dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
        dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
        s = torch.arange(config.input_size)
        rows = (dy[:, None] + s)[:, None, :, None]  # one random offset per image, vectorised
        cols = (dx[:, None] + s)[:, None, None, :]
        x = padded[torch.arange(n)[:, None, None, None],
                   torch.arange(x.shape[1])[None, :, None, None], rows, cols]
    if "flip" in config.augment:
        flip = torch.rand(n, generator=gen) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    if "jitter" in config.augment:
        gain = 1.0 + (torch.rand(n, 1, 1, 1, generator=gen) - 0.5) * 0.4
        bias = (torch.rand(n, 1, 1, 1, generator=gen) - 0.5) * 0.2
        x = x * gain + bias
    return x


@dataclass
class CNNModel:
    """A trained network with its preprocessing; ``embed`` and ``predict_proba`` take images."""

    config: CNNConfig
    classes: list[str]
    net: Any
    mean: np.ndarray
    std: np.ndarray
    history: list[dict[str, float]] = field(default_factory=list)

    def _tensor(self, images: Sequence[np.ndarray]):
        import torch

        batch = np.stack([preprocess(im, self.config) for im in images])
        batch = (batch - self.mean[None, :, None, None]) / self.std[None, :, None, None]
        return torch.from_numpy(batch.astype(np.float32))

    def _run(self, images: Sequence[np.ndarray], layer: str, batch_size: int = 256) -> np.ndarray:
        import torch

        self.net.eval()
        device = next(self.net.parameters()).device
        threads = torch.get_num_threads()
        if len(images) < 8:  # one small image: thread start-up costs more than it saves
            torch.set_num_threads(1)
        try:
            return self._batches(images, layer, batch_size, device)
        finally:
            torch.set_num_threads(threads)

    def _batches(self, images, layer, batch_size, device) -> np.ndarray:
        import torch

        out = []
        with torch.inference_mode():
            for start in range(0, len(images), batch_size):
                x = self._tensor(images[start:start + batch_size]).to(device)
                if layer == "embedding":
                    y = self.net.embed(x)
                elif layer == "logits":
                    y = self.net(x)
                else:
                    y = torch.softmax(self.net(x), dim=1)
                out.append(y.float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.classes)), np.float32)

    def embed(self, image: np.ndarray, layer: str = "embedding") -> np.ndarray:
        """One image's embedding (or class probabilities, ``layer="probabilities"``)."""
        return self._run([image], layer)[0]

    def predict_proba(self, images: Sequence[np.ndarray]) -> np.ndarray:
        return self._run(images, "probabilities")

    # ---- persistence --------------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        return {"kind": "cnn", "classes": list(self.classes), "config": asdict(self.config),
                "mean": self.mean.tolist(), "std": self.std.tolist(), "history": self.history}

    def weights_bytes(self) -> bytes:
        from safetensors.torch import save

        state = {k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}
        return save(state)

    @classmethod
    def from_parts(cls, meta: dict[str, Any], weights: bytes, device: str = "cpu") -> CNNModel:
        """Rebuild a network from ``model.json``'s fields and ``weights.safetensors`` bytes.

        Parameters
        ----------
        meta : dict
            ``classes``, ``config``, ``mean``, ``std`` (and ``history``) as
            :meth:`metadata` wrote them.
        weights : bytes
            A safetensors file (no pickle).
        device : str
            Where the network runs.

        Returns
        -------
        CNNModel

        Raises
        ------
        UsageError
            A field or the weights that do not make this network; the message names the file.
        """
        from safetensors import SafetensorError
        from safetensors.torch import load

        from pixelmill.errors import UsageError

        try:
            config = CNNConfig.from_dict(dict(meta["config"]))
            config.check()
            classes = [str(c) for c in meta["classes"]]
            mean = np.asarray(meta["mean"], np.float32)
            std = np.asarray(meta["std"], np.float32)
            history = [dict(h) for h in meta.get("history") or []]
            net = build_net(config, len(classes))
        except (KeyError, TypeError, ValueError) as e:  # InvalidParameterError is a ValueError
            raise UsageError(f"model.json: the CNN's settings do not make a network "
                             f"({type(e).__name__}: {e})") from e
        if mean.shape != (config.in_channels,) or std.shape != (config.in_channels,) \
                or not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):
            raise UsageError(f"model.json: mean and std need {config.in_channels} finite values "
                             "(std > 0), one per input channel")
        try:
            state = load(weights)
        except (SafetensorError, ValueError, OSError) as e:
            raise UsageError(f"weights.safetensors: not a safetensors file ({e})") from e
        try:
            net.load_state_dict(state)
        except RuntimeError as e:  # missing, extra or misshapen tensors
            first = str(e).strip().splitlines()
            raise UsageError("weights.safetensors: the weights do not fit the network of "
                             f"model.json ({first[1].strip() if len(first) > 1 else e})") from e
        net.to(_device(device)).eval()
        return cls(config, classes, net, mean, std, history)


def train_cnn(
    train_images: Sequence[np.ndarray],
    train_labels: Sequence[str],
    val_images: Sequence[np.ndarray] = (),
    val_labels: Sequence[str] = (),
    config: CNNConfig | None = None,
    *,
    threads: int | None = None,
    log: Any = None,
) -> CNNModel:
    """Train a :class:`CNNModel` from scratch with early stopping on validation accuracy.

    Parameters
    ----------
    train_images, train_labels : sequences
        Training images (any size, dtype as ops take) and their labels.
    val_images, val_labels : sequences
        Validation set for early stopping (without it: all ``epochs`` run, the last is kept).
    config : CNNConfig, optional
        Architecture and training settings.
    threads : int, optional
        CPU threads for PyTorch.
    log : callable, optional
        Called with one line per epoch.

    Returns
    -------
    CNNModel
    """
    import torch

    from pixelmill.errors import UsageError

    config = config or CNNConfig()
    config.check()
    classes = sorted({str(c) for c in train_labels})
    if len(train_images) != len(train_labels) or len(val_images) != len(val_labels):
        raise UsageError("train_cnn: every image needs one label")
    if len(classes) < 2:
        raise UsageError(f"training needs at least two classes in the train split (found "
                         f"{len(train_labels)} train images of {len(classes)} class"
                         f"{'es' if len(classes) != 1 else ''})")
    if threads:  # for this call only: the caller's process keeps its own setting
        before = torch.get_num_threads()
        torch.set_num_threads(int(threads))
        try:
            return train_cnn(train_images, train_labels, val_images, val_labels, config,
                             log=log)
        finally:
            torch.set_num_threads(before)
    device = _device(config.device)
    # seeded for this call only: the caller's torch RNG (CPU, and the CUDA device trained on) is
    # left as it was, as an earlier call left it for the next one
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(config.seed)
        return _fit(train_images, train_labels, val_images, val_labels, config, classes,
                    device, log)


def _fit(train_images, train_labels, val_images, val_labels, config, classes, device,
         log) -> CNNModel:
    import torch
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(config.seed)
    index = {c: i for i, c in enumerate(classes)}
    x_train = np.stack([preprocess(im, config) for im in train_images])
    mean = x_train.mean(axis=(0, 2, 3)).astype(np.float32)
    std = np.maximum(x_train.std(axis=(0, 2, 3)), 1e-3).astype(np.float32)
    model = CNNModel(config, classes, build_net(config, len(classes)), mean, std)
    net = model.net.to(device)
    xt = torch.from_numpy((x_train - mean[None, :, None, None]) / std[None, :, None, None])
    yt = torch.tensor([index[str(c)] for c in train_labels])
    val_known = [i for i, c in enumerate(val_labels) if str(c) in index]
    val_imgs = [val_images[i] for i in val_known]
    yv = np.array([index[str(val_labels[i])] for i in val_known])
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(config.epochs, 1))
    best_acc, best_state, waited = -1.0, None, 0
    for epoch in range(config.epochs):
        t0 = time.perf_counter()
        net.train()
        order = torch.randperm(len(yt), generator=gen)
        total = 0.0
        for start in range(0, len(order), config.batch_size):
            idx = order[start:start + config.batch_size]
            if len(idx) < 2:  # batch norm needs two samples
                continue
            xb = _augment(xt[idx], config, gen).to(device)
            loss = F.cross_entropy(net(xb), yt[idx].to(device))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        sched.step()
        seconds = time.perf_counter() - t0
        entry = {"epoch": epoch + 1, "loss": total / max(len(yt), 1), "seconds": seconds,
                 "images_per_s": len(yt) / seconds if seconds > 0 else 0.0}
        if len(yv):
            acc = float(np.mean(model._run(val_imgs, "logits").argmax(1) == yv))
            entry["val_accuracy"] = acc
            if acc > best_acc:
                best_acc, waited = acc, 0
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            else:
                waited += 1
        model.history.append(entry)
        if log is not None:
            log(json.dumps({k: round(v, 4) if isinstance(v, float) else v
                            for k, v in entry.items()}))
        if len(yv) and waited >= config.patience:
            break
    if best_state is not None:
        net.load_state_dict(best_state)
    net.eval()
    return model
