"""Which torch device to run on, checked before any work (super-resolution and the CNN)."""

from __future__ import annotations

from pixelmill.errors import InvalidParameterError

__all__ = ["resolve_device"]


def resolve_device(name: str | None = "auto", field: str = "device") -> str:
    """The torch device to run on: ``auto`` (or None) is CUDA when torch sees a GPU, else the
    CPU; ``cpu``, ``cuda`` and ``cuda:N`` are checked against what torch can use here.

    Raises :class:`InvalidParameterError` naming ``field`` before any work, instead of torch's
    own assertion deep inside the first ``.to(device)``.
    """
    import torch

    if name in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError, TypeError) as e:
        raise InvalidParameterError(
            f"{field}: {name!r} is not a device (use auto, cpu, cuda or cuda:N)", field=field
        ) from e
    if dev.type == "cpu":
        return "cpu"
    if dev.type != "cuda":
        raise InvalidParameterError(
            f"{field}: {name!r}: pixelmill runs on cpu or cuda devices", field=field)
    if not torch.cuda.is_available():
        raise InvalidParameterError(
            f"{field}: {name!r} requested, but this torch ({torch.__version__}) sees no CUDA "
            "device; use cpu, or auto to take a GPU when there is one", field=field)
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        raise InvalidParameterError(
            f"{field}: {name!r}: torch sees {torch.cuda.device_count()} CUDA device(s)",
            field=field)
    return str(dev)
