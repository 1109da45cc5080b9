"""Pipelines: a frozen, validated list of steps, and the halo/scale algebra of the whole.

A pipeline file is YAML or JSON::

    steps:
      - op: resize
        long_side: 512
        method: area
      - op: gaussian
        sigma: 1.5

Every step is validated against the op registry when the pipeline is built — an unknown op
names the closest valid ones, a bad value names ``steps[i].field``, the value and what is
allowed — so nothing fails inside a worker for a mistake that could be caught before.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pixelmill.errors import InvalidParameterError, UsageError
from pixelmill.ops import get_op, registry
from pixelmill.ops._common import shared_luma
from pixelmill.ops._registry import OpSpec

#: ops and op families whose results are not colours of the input's colour space
#: (``laplacian``, a second derivative, is an edge map as ``sobel`` is, though filed under
#: filters)
_LEAVES_COLOUR_SPACE = frozenset({"convert", "gradient", "tophat", "blackhat", "skeletonize",
                                  "laplacian"})
_LEAVING_FAMILIES = frozenset({"edges", "segmentation"})

__all__ = ["Pipeline", "PipelineResult", "Step", "load_pipeline", "pipeline_json_schema"]


def _freeze(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value


@dataclass(frozen=True)
class Step:
    """One validated step: an op name and its full parameter set (defaults filled in)."""

    op: str
    params: tuple[tuple[str, Any], ...]

    @classmethod
    def build(cls, op_name: str, params: Mapping[str, Any] | None = None, where: str = "step"):
        spec = get_op(op_name, f"{where}.op")
        bound = spec.bind(params or {}, where)
        return cls(op_name, tuple((k, _freeze(v)) for k, v in bound.items()))

    @property
    def spec(self) -> OpSpec:
        return get_op(self.op)

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.params)

    @property
    def halo(self) -> float:
        return self.spec.halo(self.kwargs)

    @property
    def scale(self) -> float | None:
        return self.spec.scale(self.kwargs)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"op": self.op}
        for k, v in self.params:
            out[k] = list(v) if isinstance(v, tuple) else v
        return out


@dataclass
class PipelineResult:
    """What running a pipeline on one image gives: the image, measurements, feature vectors."""

    image: np.ndarray
    measures: dict[str, Any] = field(default_factory=dict)
    vectors: dict[str, np.ndarray] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


def _check_labels_flow(steps: list[Step]) -> None:
    """A step after a label-image step must accept int32 labels: say so at load time."""
    labels_at = None
    for i, step in enumerate(steps):
        spec = step.spec
        if labels_at is not None and "int32" not in spec.dtypes:
            source = steps[labels_at].op
            raise InvalidParameterError(
                f"steps[{i}].op: {step.op!r} cannot take the int32 label image made by "
                f"steps[{labels_at}] ({source}); it takes {', '.join(spec.dtypes)}",
                field=f"steps[{i}].op",
            )
        if spec.output == "labels":
            labels_at = i
        elif spec.output == "image":
            labels_at = None


class _DuplicateKeyError(Exception):
    def __init__(self, message: str, key: str) -> None:
        super().__init__(message)
        self.key = key


#: floats as YAML 1.2 and JSON write them: ``5e-1``, ``1E+0``, ``1e9`` (YAML 1.1, PyYAML's
#: default, wants a dot and a signed exponent and reads these as strings)
_FLOAT_RE = r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
|[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
|\.[0-9_]+(?:[eE][-+]?[0-9]+)?
|[-+]?\.(?:inf|Inf|INF)
|\.(?:nan|NaN|NAN))$"""

@functools.cache
def _pipeline_loader() -> Any:
    """A SafeLoader that reads JSON/YAML 1.2 number forms as floats and refuses a mapping
    that names one key twice (PyYAML would silently keep the last value); built once, on
    first use (yaml is imported only by jobs that read a pipeline file)."""
    import re

    import yaml

    class PipelineLoader(yaml.SafeLoader):
        pass

    # a copy of the resolvers, with the float one replaced (SafeLoader's stay as they are)
    PipelineLoader.yaml_implicit_resolvers = {
        ch: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:float"]
        for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
    PipelineLoader.add_implicit_resolver(
        "tag:yaml.org,2002:float", re.compile(_FLOAT_RE, re.X), list("-+0123456789."))
    # and integers as YAML 1.2 too: 010 is ten (1.1: eight), 1:30 and 1_000 are no numbers
    # (1.1: ninety, a thousand); 0o17 and 0x1F keep their bases
    PipelineLoader.yaml_implicit_resolvers = {
        ch: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:int"]
        for ch, resolvers in PipelineLoader.yaml_implicit_resolvers.items()}
    PipelineLoader.add_implicit_resolver(
        "tag:yaml.org,2002:int", re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"),
        list("-+0123456789"))

    def construct_int(loader, node):
        text = loader.construct_scalar(node)
        if text.startswith(("0o", "0x")):
            return int(text[2:], 8 if text[1] == "o" else 16)
        return int(text, 10)

    PipelineLoader.add_constructor("tag:yaml.org,2002:int", construct_int)

    def construct_mapping(loader, node, deep=False):
        # the keys written in this mapping, before a merge (``<<: *base``) adds its own: a
        # key given here overrides the merged one, as YAML says, and is no duplicate
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = loader.construct_object(key_node, deep=deep)
            try:
                hash(key)
            except TypeError:
                continue  # the constructor below says so
            if key in seen:
                line = key_node.start_mark.line + 1
                raise _DuplicateKeyError(
                    f"line {line}: duplicate key {key!r} (first on line {seen[key]}); each "
                    "field may be given once", str(key))
            seen[key] = key_node.start_mark.line + 1
        return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)

    PipelineLoader.add_constructor("tag:yaml.org,2002:map",
                                   lambda loader, node: _map(loader, node, construct_mapping))
    return PipelineLoader


def _map(loader: Any, node: Any, construct_mapping: Any) -> Any:
    data: dict[Any, Any] = {}
    yield data
    data.update(construct_mapping(loader, node))


@dataclass(frozen=True)
class Pipeline:
    """An ordered, frozen tuple of validated :class:`Step` values."""

    steps: tuple[Step, ...] = ()

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def from_steps(cls, steps: Iterable[Mapping[str, Any] | tuple[str, Mapping[str, Any]]]):
        """Build from ``[{"op": "gaussian", "sigma": 1.5}, ...]``, ``[("gaussian", {...})]``,
        bare op names, or :class:`Step` values (re-validated)."""
        built = []
        for i, raw in enumerate(steps):
            where = f"steps[{i}]"
            if isinstance(raw, Step):
                built.append(Step.build(raw.op, raw.kwargs, where))
                continue
            if isinstance(raw, tuple) and len(raw) == 2 and isinstance(raw[0], str):
                name, params = raw[0], dict(raw[1] or {})
            elif isinstance(raw, Mapping):
                params = dict(raw)
                if "op" not in params:
                    raise InvalidParameterError(
                        f"{where}: a step needs an 'op' field naming the operation", field=where
                    )
                name = params.pop("op")
            elif isinstance(raw, str):
                name, params = raw, {}
            else:
                raise InvalidParameterError(
                    f"{where}: expected a mapping like {{op: gaussian, sigma: 1.5}}, got {raw!r}",
                    field=where,
                )
            if not isinstance(name, str):
                raise InvalidParameterError(f"{where}.op: expected an op name, got {name!r}",
                                            field=f"{where}.op")
            built.append(Step.build(name, params, where))
        _check_labels_flow(built)
        return cls(tuple(built))

    @classmethod
    def from_dict(cls, data: Any) -> Pipeline:
        if isinstance(data, list):
            return cls.from_steps(data)
        if not isinstance(data, Mapping):
            raise InvalidParameterError("pipeline: expected a mapping with a 'steps' list",
                                        field="steps")
        valid = ("steps", "name", "description", "version")
        unknown = [k for k in data if k not in valid]
        if unknown:
            close = difflib.get_close_matches(str(unknown[0]), valid, 1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise InvalidParameterError(
                f"{unknown[0]}: unknown top-level field{hint} (valid: {', '.join(valid)})",
                field=str(unknown[0]),
            )
        for key, kinds, what in (("name", str, "a string"), ("description", str, "a string"),
                                 ("version", int | str, "an integer or a string")):
            value = data.get(key)
            if value is not None and (not isinstance(value, kinds) or isinstance(value, bool)):
                raise InvalidParameterError(f"{key}: expected {what}, got {value!r:.60}",
                                            field=key)
        steps = data.get("steps")
        if not isinstance(steps, list):
            raise InvalidParameterError("steps: expected a list of steps", field="steps")
        return cls.from_steps(steps)

    @classmethod
    def from_text(cls, text: str, source: str = "<pipeline>") -> Pipeline:
        import yaml  # JSON is YAML, so one parser reads both

        try:
            data = yaml.load(text, Loader=_pipeline_loader())  # a SafeLoader subclass
        except _DuplicateKeyError as e:
            raise InvalidParameterError(f"{source}: {e}", field=e.key) from e
        except yaml.YAMLError as e:
            raise UsageError(f"{source}: not valid YAML/JSON: {e}") from e
        except RecursionError:
            raise UsageError(f"{source}: not a pipeline: lists or mappings nested too deeply "
                             "to read") from None
        return cls.from_dict(data)

    # ---- algebra --------------------------------------------------------------------------
    @property
    def scale(self) -> float | None:
        """Output size / input size of the whole pipeline (None if it depends on the input)."""
        total = 1.0
        for step in self.steps:
            s = step.scale
            if s is None:
                return None
            total *= s
        return total

    @property
    def halo(self) -> float:
        """Pixels of *input* context an output pixel needs, through every step.

        A step's halo is counted in its own input's pixels, so after a step of scale ``s`` the
        following halos shrink by ``s`` when expressed in the pipeline's input pixels.
        """
        total, scale = 0.0, 1.0
        for step in self.steps:
            total += step.halo / scale
            s = step.scale
            if s is None:
                return math.inf
            scale *= s
        return total

    def output_dtype(self, dtype: str) -> str:
        """The dtype of the image this pipeline returns for an input of ``dtype`` (measurement
        and vector steps pass the image on unchanged)."""
        out = str(np.dtype(dtype))
        for step in self.steps:
            if step.spec.output in ("image", "labels"):
                out = step.spec.output_dtype(step.kwargs, out)
        return out

    def untileable_steps(self) -> list[tuple[int, str, str]]:
        """(index, op, why) for each step that prevents exact tiling."""
        out = []
        for i, step in enumerate(self.steps):
            spec, kw = step.spec, step.kwargs
            if spec.output in ("measures", "vector"):
                out.append((i, step.op, "it measures the whole image"))
            elif not math.isfinite(spec.halo(kw)):
                if kw.get("mode") == "wrap":
                    why = "its border mode 'wrap' reads the opposite edge of the image"
                else:
                    why = "it reads the whole image (global op)"
                out.append((i, step.op, why))
            elif spec.scale(kw) is None:
                out.append((i, step.op, "its output size depends on the input's size"))
            elif (why := spec.untileable(kw)) is not None:
                out.append((i, step.op, why))
        return out

    @property
    def tileable(self) -> bool:
        return not self.untileable_steps()

    @property
    def keeps_colour_space(self) -> bool:
        """Whether the output's values are colours in the input's colour space, so the input's
        ICC profile describes them too: no ``convert`` (gray, HSV, Lab and YCbCr values are not
        in an RGB profile's space), no edge map, mask or label image, no morphological
        difference. A measuring step (``component_stats``, ``phash``...) leaves the image as it
        is, whatever its family."""
        return not any((step.op in _LEAVES_COLOUR_SPACE or step.spec.family in _LEAVING_FAMILIES)
                       and step.spec.output not in ("measures", "vector") for step in self.steps)

    # ---- execution ------------------------------------------------------------------------
    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Run the image steps and return the final image (measurements are dropped)."""
        return self.run(image).image

    def run(self, image: np.ndarray) -> PipelineResult:
        """Run every step; measurement and vector ops record values and pass the image on."""
        if isinstance(image, np.ndarray) and image.size and not image.flags.c_contiguous:
            # every op wants C order (a view turned upright by its EXIF orientation, a slice):
            # one copy here, not one per step, and the steps then share the same image object
            image = np.ascontiguousarray(image)
        result = PipelineResult(image=image)
        del image  # the copy lives only as long as the steps use it (not through the run)
        with shared_luma() as lumas:  # measuring steps in a row weight the channels once
            for i, step in enumerate(self.steps):
                spec = step.spec
                if spec.output not in ("measures", "vector"):  # it may change the image in place
                    lumas.clear()
                t0 = time.perf_counter()
                out = spec.func(result.image, **step.kwargs)
                result.timings[f"{i}:{step.op}"] = time.perf_counter() - t0
                if spec.output == "measures":
                    for key, value in out.items():
                        name = key if key not in result.measures else f"{key}_{i}"
                        result.measures[name] = value
                elif spec.output == "vector":
                    name = step.op if step.op not in result.vectors else f"{step.op}_{i}"
                    result.vectors[name] = np.asarray(out, dtype=np.float32).ravel()
                else:
                    result.image = out
        return result

    # ---- serialisation ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"steps": [s.to_dict() for s in self.steps]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @property
    def fingerprint(self) -> str:
        """A short hash of the validated pipeline (parameters with defaults), for manifests."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    def __len__(self) -> int:
        return len(self.steps)


def load_pipeline(source: str | Path | Mapping | list | Pipeline,
                  storage_options: Mapping[str, Any] | None = None) -> Pipeline:
    """A pipeline from a file path or URL (YAML/JSON), a dict/list, or a Pipeline.

    ``storage_options`` are the fsspec options of a URL (an ``s3://`` endpoint, credentials),
    as ``--storage-option`` gives them for the command's other URLs."""
    if isinstance(source, Pipeline):
        return source
    if isinstance(source, Mapping | list):
        return Pipeline.from_dict(source)
    text_source = str(source)
    from pixelmill import storage
    from pixelmill.errors import PixelmillError

    try:
        text = storage.read_bytes(text_source, storage_options).decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"pipeline file {text_source!r} cannot be read: {e}") from e
    except PixelmillError:
        raise
    except Exception as e:  # a remote store's client (no credentials, unreachable endpoint)
        raise storage.remote_error(text_source, e, field="PIPELINE") from e
    if not text.strip():
        raise UsageError(f"pipeline file {text_source!r} is empty; expected a mapping with a "
                         "'steps' list (or the list of steps)")
    return Pipeline.from_text(text, text_source)


def pipeline_json_schema() -> dict[str, Any]:
    """A JSON Schema (draft 2020-12) for pipeline files, generated from the op registry."""
    variants = []
    for name, spec in registry().items():
        props: dict[str, Any] = {"op": {"const": name}}
        required = ["op"]
        for pname, p in spec.params.items():
            props[pname] = p.json_schema()
            if p.required:
                required.append(pname)
        variants.append(
            {
                "type": "object",
                "title": name,
                "description": spec.summary,
                "properties": props,
                "required": required,
                "additionalProperties": False,
            }
        )
    # a bare op name is a step with the op's defaults (ops without required parameters)
    bare = sorted(name for name, spec in registry().items()
                  if not any(p.required for p in spec.params.values()))
    variants.append({"type": "string", "title": "op name (its defaults)", "enum": bare})
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "pixelmill pipeline",
        # a mapping with a 'steps' list, or the list of steps alone (Pipeline.from_dict)
        "type": ["object", "array"],
        "properties": {
            # null as the loader takes it (``description:`` with nothing after it)
            "name": {"type": ["string", "null"]},
            "description": {"type": ["string", "null"]},
            "version": {"type": ["integer", "string", "null"]},
            "steps": {"type": "array", "items": {"oneOf": variants}},
        },
        "required": ["steps"],
        "additionalProperties": False,
        "items": {"$ref": "#/properties/steps/items"},
    }
