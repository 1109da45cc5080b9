"""The op registry: one declaration per op is the truth for validation, CLI, docs and schema.

An op is a pure function on a NumPy array, ``f(image, *, param=default, ...)``, decorated with
:func:`op`. The decorator reads the keyword-only parameters from the signature — their type
annotations (``int``, ``float``, ``bool``, ``str``, ``Literal[...]``, ``tuple[int, int]``,
``X | None``, and ``Annotated[X, Range(ge=..., le=...)]`` for bounds), their defaults and their
numpydoc descriptions — and attaches an :class:`OpSpec` to the function. Nothing is registered
by import side effect: :mod:`pixelmill.ops` collects the specs from an explicit list of family
modules, and a duplicate name is an error.
"""

from __future__ import annotations

import difflib
import inspect
import math
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import numpy as np

from pixelmill.errors import InvalidParameterError

__all__ = [
    "GLOBAL",
    "OUTPUT_KINDS",
    "OpSpec",
    "ParamSpec",
    "Range",
    "op",
]

#: halo of an op that reads the whole image (histogram equalization, Otsu): it cannot be tiled.
GLOBAL = math.inf

#: what an op returns: an image array, a label image (int32), a dict of measurements
#: (manifest columns) or a 1-D float32 feature vector.
OUTPUT_KINDS = ("image", "labels", "measures", "vector")

_REQUIRED = inspect.Parameter.empty

#: what counts as a number in a spec (NumPy scalars too; complex numbers do not)
_NUMBER = (int, float, np.integer, np.floating)


def _number(value: float) -> str:
    """A bound as people write it: 1000000 rather than 1e+06, 0.5 rather than 0.500000."""
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _shown(value: Any, limit: int = 60) -> str:
    """``repr(value)`` for a message, cut to ``limit`` characters (a 10 MB value is not echoed)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


@dataclass(frozen=True)
class Range:
    """Numeric bounds for a parameter, used as ``Annotated[float, Range(ge=0)]``."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def describe(self) -> str:
        parts = []
        for sym, val in ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt)):
            if val is not None:
                parts.append(f"{sym} {_number(val)}")
        return " and ".join(parts)

    def contains(self, value: float) -> bool:
        return not (
            (self.ge is not None and value < self.ge)
            or (self.gt is not None and value <= self.gt)
            or (self.le is not None and value > self.le)
            or (self.lt is not None and value >= self.lt)
        )


#: bounds of a value written into a float32 image (beyond them it becomes inf)
FLOAT32 = Range(ge=-3.4e38, le=3.4e38)


@dataclass(frozen=True)
class ParamSpec:
    """One typed parameter of an op."""

    name: str
    type: type  #: int, float, bool or str (the element type for sequences)
    default: Any = _REQUIRED
    choices: tuple[Any, ...] | None = None
    bounds: Range | None = None
    length: int | None = None  #: fixed sequence length (``tuple[int, int]``), else scalar
    variadic: bool = False  #: ``tuple[float, ...]``: a sequence of any length
    optional: bool = False  #: ``None`` is allowed
    doc: str = ""

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED

    def describe_allowed(self, element: bool = False) -> str:
        """What a valid value looks like (``element``: one entry of a sequence parameter)."""
        if self.choices is not None:
            allowed = "one of " + ", ".join(repr(c) for c in self.choices)
        else:
            tname = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}[
                self.type
            ]
            allowed = tname
            if self.bounds is not None:
                allowed += " " + self.bounds.describe()
            if element:
                return allowed
            if self.length is not None:
                allowed = f"a list of {self.length} values, each {allowed}"
            elif self.variadic:
                allowed = f"a list of one or more values, each {allowed}"
        if self.optional and not element:
            allowed += ", or null"
        return allowed

    def _scalar(self, value: Any, where: str) -> Any:
        element = self.length is not None or self.variadic
        bad = InvalidParameterError(
            f"{where}: expected {self.describe_allowed(element)}, got {_shown(value)}", field=where
        )
        if self.choices is not None:
            if value not in self.choices or isinstance(value, bool) != isinstance(
                self.choices[0], bool
            ):
                close = difflib.get_close_matches(str(value), [str(c) for c in self.choices], 3)
                hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
                raise InvalidParameterError(
                    f"{where}: expected {self.describe_allowed(element)}, got {_shown(value)}{hint}",
                    field=where,
                )
            return self.choices[self.choices.index(value)]  # 8.0 -> the declared 8
        if self.type is bool:
            if isinstance(value, bool | np.bool_):
                return bool(value)
            raise bad
        if self.type is int:
            if isinstance(value, bool) or not isinstance(value, int | np.integer | float):
                raise bad
            if isinstance(value, float) and not value.is_integer():
                raise bad
            value = int(value)
        elif self.type is float:
            if isinstance(value, bool) or not isinstance(value, _NUMBER):
                raise bad
            try:
                value = float(value)
            except OverflowError:  # an integer of hundreds of digits
                raise bad from None
            if not math.isfinite(value):
                raise bad
        elif self.type is str and not isinstance(value, str):
            raise bad
        if self.bounds is not None and not self.bounds.contains(value):
            raise bad
        return value

    def validate(self, value: Any, where: str) -> Any:
        """Return ``value`` coerced to this parameter's type, or raise naming ``where``."""
        if value is None:
            if self.optional:
                return None
            raise InvalidParameterError(
                f"{where}: expected {self.describe_allowed()}, got null", field=where
            )
        if self.length is not None or self.variadic:
            if isinstance(value, _NUMBER) and not isinstance(value, bool) and self.length:
                value = [value] * self.length  # a scalar broadcasts to every entry
            if not isinstance(value, list | tuple | np.ndarray):
                raise InvalidParameterError(
                    f"{where}: expected {self.describe_allowed()}, got {_shown(value)}",
                    field=where)
            if self.variadic and len(value) == 0:  # every op reading a list needs an entry
                raise InvalidParameterError(
                    f"{where}: expected {self.describe_allowed()}, got an empty list",
                    field=where)
            if self.length is not None and len(value) != self.length:
                raise InvalidParameterError(
                    f"{where}: expected {self.describe_allowed()}, got {len(value)} values",
                    field=where,
                )
            return tuple(self._scalar(v, f"{where}[{i}]") for i, v in enumerate(value))
        return self._scalar(value, where)

    def json_schema(self) -> dict[str, Any]:
        if self.choices is not None:
            item: dict[str, Any] = {"enum": list(self.choices)}
        else:
            item = {
                "type": {int: "integer", float: "number", bool: "boolean", str: "string"}[
                    self.type
                ]
            }
            if self.bounds is not None:
                for key, val in (
                    ("minimum", self.bounds.ge),
                    ("exclusiveMinimum", self.bounds.gt),
                    ("maximum", self.bounds.le),
                    ("exclusiveMaximum", self.bounds.lt),
                ):
                    if val is not None:
                        item[key] = val
        if self.length is not None or self.variadic:
            schema: dict[str, Any] = {"type": "array", "items": item}
            if self.length is None:
                schema["minItems"] = 1
            else:
                schema["minItems"] = schema["maxItems"] = self.length
                if self.type in (int, float):  # a number broadcasts to every entry (validate)
                    schema = {"anyOf": [schema, item]}
        else:
            schema = item
        if self.optional:
            schema = {"anyOf": [schema, {"type": "null"}]}
        if self.doc:
            schema["description"] = self.doc
        if not self.required:
            default = self.default
            schema["default"] = list(default) if isinstance(default, tuple) else default
        return schema


HaloRule = float | int | Callable[[Mapping[str, Any]], float]
ScaleRule = float | int | Callable[[Mapping[str, Any]], float | None] | None
OutDtypeRule = str | Callable[[Mapping[str, Any]], str | None] | None


@dataclass(frozen=True)
class OpSpec:
    """Everything the registry knows about one op.

    ``halo``: input pixels of context each output pixel reads, on every side (``GLOBAL`` for
    ops that read the whole image). ``scale``: output size / input size (``None`` when it
    depends on the input's size, as for resizing to a fixed size). An op is *tileable* when
    both are finite and known for the given parameters.
    """

    name: str
    func: Callable[..., Any]
    family: str
    params: Mapping[str, ParamSpec]
    output: str = "image"
    halo_rule: HaloRule = 0
    scale_rule: ScaleRule = 1.0
    summary: str = ""
    doc: str = ""
    dtypes: tuple[str, ...] = ("uint8", "uint16", "float32")
    extra: Mapping[str, Any] = field(default_factory=dict)
    out_dtype_rule: OutDtypeRule = None

    def _filled(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """``params`` with the defaults of the parameters it leaves out."""
        return {**{k: p.default for k, p in self.params.items() if not p.required}, **params}

    def output_dtype(self, params: Mapping[str, Any], dtype: str) -> str:
        """The dtype of the image this op returns for an input of ``dtype`` (label images are
        int32; ``None`` from the op's rule means the input's own dtype, the default policy)."""
        if self.output == "labels":
            return "int32"
        rule = self.out_dtype_rule
        value = rule(self._filled(params)) if callable(rule) else rule
        return str(np.dtype(value or dtype))

    def bind(self, params: Mapping[str, Any] | None = None, where: str | None = None) -> dict:
        """Validate ``params`` against this op; return the full dict with defaults filled."""
        where = where or self.name
        params = dict(params or {})
        unknown = [k for k in params if k not in self.params]
        if unknown:
            key = str(unknown[0])[:60]  # a YAML key may be a number, null or a 10 MB string
            close = difflib.get_close_matches(key, list(self.params), 3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            valid = ", ".join(self.params) or "none"
            raise InvalidParameterError(
                f"{where}.{key}: unknown parameter of op '{self.name}'{hint} "
                f"(valid parameters: {valid})",
                field=f"{where}.{key}",
            )
        bound: dict[str, Any] = {}
        for name, spec in self.params.items():
            if name in params:
                bound[name] = spec.validate(params[name], f"{where}.{name}")
            elif spec.required:
                raise InvalidParameterError(
                    f"{where}.{name}: required parameter of op '{self.name}' is missing "
                    f"(expected {spec.describe_allowed()})",
                    field=f"{where}.{name}",
                )
            else:
                bound[name] = spec.default
        check = self.extra.get("check")
        if check is not None:
            problem = check(bound)
            if problem:
                # a check that starts with "param: ..." is about that parameter: name it
                head, sep, rest = problem.partition(":")
                if sep and head in self.params:
                    raise InvalidParameterError(f"{where}.{head}:{rest}", field=f"{where}.{head}")
                raise InvalidParameterError(f"{where}: {problem}", field=where)
        return bound

    def halo(self, params: Mapping[str, Any]) -> float:
        """Input pixels of context per side for ``params`` (``GLOBAL`` if the whole image).

        A ``wrap`` border reads the opposite edge of the image, so an op whose border ``mode``
        is ``"wrap"`` is global whatever its kernel size.
        """
        mode = self.params.get("mode")
        if (mode is not None and mode.choices is not None and "wrap" in mode.choices
                and params.get("mode") == "wrap"):
            return GLOBAL
        rule = self.halo_rule
        return float(rule(self._filled(params)) if callable(rule) else rule)

    def scale(self, params: Mapping[str, Any]) -> float | None:
        rule = self.scale_rule
        value = rule(self._filled(params)) if callable(rule) else rule
        return None if value is None else float(value)

    def untileable(self, params: Mapping[str, Any]) -> str | None:
        """Why a tile cannot reproduce the op's whole-image result for ``params`` although its
        halo and scale are known (the op's ``untileable`` rule), or None."""
        rule = self.extra.get("untileable")
        return rule(self._filled(params)) if rule else None

    def tileable(self, params: Mapping[str, Any]) -> bool:
        return (
            self.output in ("image", "labels")
            and math.isfinite(self.halo(params))
            and self.scale(params) is not None
            and self.untileable(params) is None
        )

    def __call__(self, image: np.ndarray, **params: Any) -> Any:
        return self.func(image, **self.bind(params))


def _parse_numpydoc_params(doc: str) -> dict[str, str]:
    """Map parameter name -> first sentence of its description in a numpydoc docstring."""
    out: dict[str, str] = {}
    m = re.search(r"^\s*Parameters\s*\n\s*-{3,}\s*\n(.*?)(?:^\s*\w[\w ]*\n\s*-{3,}\s*$|\Z)",
                  doc, re.S | re.M)
    if not m:
        return out
    current: list[str] = []
    for line in m.group(1).splitlines():
        # a parameter line starts at the section's indentation: "name : type" or "a, b : type";
        # indented lines are its description (which may contain "Word: ..." themselves)
        head = re.match(r"^(\w+(?:\s*,\s*\w+)*)\s*(?::|$)", line)
        if head and not line[:1].isspace():
            current = [n.strip() for n in head.group(1).split(",")]
            for name in current:
                out[name] = ""
        elif current and line.strip():
            for name in current:
                out[name] = (out[name] + " " + line.strip()).strip()
    return out


def _param_from_annotation(name: str, ann: Any, default: Any, doc: str) -> ParamSpec:
    bounds = None
    optional = False
    if typing.get_origin(ann) is Annotated:
        ann, *meta = typing.get_args(ann)
        for m in meta:
            if isinstance(m, Range):
                bounds = m
    origin = typing.get_origin(ann)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(ann) if a is not type(None)]
        optional = len(args) < len(typing.get_args(ann))
        if len(args) != 1:
            raise TypeError(f"parameter {name}: unions other than X | None are not supported")
        ann = args[0]
        if typing.get_origin(ann) is Annotated:
            ann, *meta = typing.get_args(ann)
            for m in meta:
                if isinstance(m, Range):
                    bounds = m
        origin = typing.get_origin(ann)
    length = None
    variadic = False
    if origin is tuple:
        args = typing.get_args(ann)
        if len(args) == 2 and args[1] is Ellipsis:
            variadic = True
            ann = args[0]
        else:
            if len(set(args)) != 1:
                raise TypeError(f"parameter {name}: tuples must be homogeneous")
            length = len(args)
            ann = args[0]
        if typing.get_origin(ann) is Annotated:
            ann, *meta = typing.get_args(ann)
            for m in meta:
                if isinstance(m, Range):
                    bounds = m
        origin = typing.get_origin(ann)
    choices = None
    if origin is Literal:
        choices = typing.get_args(ann)
        ptype = type(choices[0])
    elif ann in (int, float, bool, str):
        ptype = ann
    else:
        raise TypeError(f"parameter {name}: unsupported annotation {ann!r}")
    if isinstance(default, list):
        default = tuple(default)
    return ParamSpec(
        name=name,
        type=ptype,
        default=default,
        choices=choices,
        bounds=bounds,
        length=length,
        variadic=variadic,
        optional=optional,
        doc=doc,
    )


def op(
    name: str | None = None,
    *,
    family: str,
    halo: HaloRule = 0,
    scale: ScaleRule = 1.0,
    output: str = "image",
    dtypes: tuple[str, ...] = ("uint8", "uint16", "float32"),
    check: Callable[[Mapping[str, Any]], str | None] | None = None,
    worker_bytes: int = 0,
    pixel_bytes: int = 0,
    value_bytes: int | Callable[[str], int] = 0,
    out_dtype: OutDtypeRule = None,
    untileable: Callable[[Mapping[str, Any]], str | None] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare a function as a pixelmill op (attaches an :class:`OpSpec`; registers nothing).

    ``check`` validates combinations of parameters: it returns ``None`` when they are fine,
    else a message; a message that starts with ``"<param>: "`` is reported against that
    parameter (``steps[2].size: expected an odd integer, got 4``).
    ``worker_bytes``: resident memory a worker keeps once it has run this op (a loaded model and
    its runtime); memory budgets add it to every worker that runs the pipeline.
    ``pixel_bytes``: working memory per input pixel while the op runs, where that exceeds the
    tiler's generic estimate (a network's feature maps); memory budgets size tiles with it.
    ``value_bytes``: working memory per value of its input (pixels × channels) while the op
    runs, its output included, where that exceeds the tiler's generic 24 bytes (float64
    temporaries); a number, or a function of the input's dtype name.
    ``out_dtype``: the dtype of the returned image when it is not the input's (``"float32"``
    for gradient maps), or a function of the parameters giving it (``None``: the input's).
    ``untileable``: for parameters whose result a tile cannot reproduce although halo and scale
    are known (the op rounds by the pixel's position in the image), a function returning why;
    tilers then run the op on the whole image or refuse.
    """
    if output not in OUTPUT_KINDS:
        raise ValueError(f"output must be one of {OUTPUT_KINDS}")

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        sig = inspect.signature(func)
        hints = typing.get_type_hints(func, include_extras=True)
        doc = inspect.getdoc(func) or ""
        pdocs = _parse_numpydoc_params(doc)
        params: dict[str, ParamSpec] = {}
        positional = [
            p for p in sig.parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        if len(positional) != 1:
            raise TypeError(f"op {func.__name__}: exactly one positional argument (the image)")
        for p in sig.parameters.values():
            if p.kind is p.KEYWORD_ONLY:
                params[p.name] = _param_from_annotation(
                    p.name, hints[p.name], p.default, pdocs.get(p.name, "")
                )
            elif p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                raise TypeError(f"op {func.__name__}: **kwargs would swallow typos")
        spec = OpSpec(
            name=name or func.__name__,
            func=func,
            family=family,
            params=types.MappingProxyType(params),
            output=output,
            halo_rule=halo,
            scale_rule=scale,
            summary=doc.split("\n\n")[0].replace("\n", " ") if doc else "",
            doc=doc,
            dtypes=dtypes,
            extra=types.MappingProxyType(
                {**({"check": check} if check else {}),
                 **({"worker_bytes": int(worker_bytes)} if worker_bytes else {}),
                 **({"pixel_bytes": int(pixel_bytes)} if pixel_bytes else {}),
                 **({"value_bytes": value_bytes} if value_bytes else {}),
                 **({"untileable": untileable} if untileable else {})}),
            out_dtype_rule=out_dtype,
        )
        func.__pixelmill_op__ = spec  # type: ignore[attr-defined]
        return func

    return decorate
