"""``pixelmill ops [NAME]``: the op registry as text or JSON, and the pipeline JSON Schema.

Everything shown comes from the registry (:func:`pixelmill.ops.registry`): names, families,
typed parameters with defaults, bounds and choices, halo and scale.
"""

from __future__ import annotations

import json
import math
import re
import textwrap
from typing import Any

import click

from pixelmill.cli._options import json_option
from pixelmill.errors import InvalidParameterError

__all__ = ["describe_op", "ops"]


def _number(value: float | None) -> Any:
    if value is None:
        return None
    if math.isinf(value):
        return "global"
    return int(value) if float(value).is_integer() else round(float(value), 6)


def _rule(spec, which: str) -> tuple[Any, bool]:
    """(value at the default parameters, or None if they are incomplete; whether it varies)."""
    rule = spec.halo_rule if which == "halo" else spec.scale_rule
    varies = callable(rule) or (which == "halo" and "mode" in spec.params and
                                "wrap" in (spec.params["mode"].choices or ()))
    try:
        bound = spec.bind({})
    except InvalidParameterError:
        return (None if callable(rule) else _number(rule)), varies
    value = spec.halo(bound) if which == "halo" else spec.scale(bound)
    return _number(value), varies


def _type_name(p) -> str:
    base = {int: "int", float: "float", bool: "bool", str: "str"}[p.type]
    if p.choices is not None:
        base = "choice"
    if p.length is not None:
        base = f"list[{p.length}×{base}]"
    elif p.variadic:
        base = f"list[{base}]"
    return base + (" | null" if p.optional else "")


def _returns(doc: str) -> str:
    """The description under the numpydoc ``Returns`` heading (what the op gives back)."""
    m = re.search(r"^Returns\n-+\n[^\n]*\n((?:[ \t]+\S[^\n]*\n?)+)", doc, re.M)
    return " ".join(line.strip() for line in m.group(1).splitlines()) if m else ""


def _result_dtypes(spec) -> dict[str, Any]:
    """``result_dtypes`` (input dtype -> returned image's dtype, with default parameters) and
    whether parameters change it; nothing for ops that return values, not an image."""
    if spec.output not in ("image", "labels"):
        return {}
    defaults = {k: p.default for k, p in spec.params.items() if not p.required}
    return {"result_dtypes": {d: spec.output_dtype(defaults, d) for d in spec.dtypes},
            "result_dtype_varies": callable(spec.out_dtype_rule)}


def describe_op(spec) -> dict[str, Any]:
    """A JSON-ready description of one op, straight from its registry entry."""
    halo, halo_varies = _rule(spec, "halo")
    scale, scale_varies = _rule(spec, "scale")
    params = []
    for p in spec.params.values():
        entry: dict[str, Any] = {"name": p.name, "type": _type_name(p), "required": p.required}
        if not p.required:
            entry["default"] = list(p.default) if isinstance(p.default, tuple) else p.default
        if p.choices is not None:
            entry["choices"] = list(p.choices)
        if p.bounds is not None:
            entry["bounds"] = {k: v for k, v in vars(p.bounds).items() if v is not None}
        entry["doc"] = p.doc
        params.append(entry)
    return {
        "name": spec.name,
        "family": spec.family,
        "output": spec.output,
        "dtypes": list(spec.dtypes),
        **_result_dtypes(spec),
        "halo": halo,
        "halo_varies": halo_varies,
        "scale": scale,
        "scale_varies": scale_varies,
        "summary": spec.summary,
        "returns": _returns(spec.doc),
        "params": params,
        "doc": spec.doc,
    }


def _fmt(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value)


def _rule_text(value: Any, varies: bool, kind: str) -> str:
    if value is None and kind == "scale" and not varies:
        return "input-dependent"
    text = "?" if value is None else str(value)
    if varies:
        text = f"{text}*" if value is not None else "varies"
    return text


def _param_short(p: dict) -> str:
    if p["required"]:
        return f"{p['name']}!"
    return f"{p['name']}={_fmt(p['default'])}"


def _print_list(rows: list[dict]) -> None:
    name_w = max(len(r["name"]) for r in rows)
    fam_w = max(len(r["family"]) for r in rows)
    click.echo(f"{'OP':<{name_w}}  {'FAMILY':<{fam_w}}  {'OUTPUT':<8}  {'HALO':>7}  "
               f"{'SCALE':>15}  PARAMETERS")
    for r in rows:
        params = " ".join(_param_short(p) for p in r["params"]) or "-"
        click.echo(f"{r['name']:<{name_w}}  {r['family']:<{fam_w}}  {r['output']:<8}  "
                   f"{_rule_text(r['halo'], r['halo_varies'], 'halo'):>7}  "
                   f"{_rule_text(r['scale'], r['scale_varies'], 'scale'):>15}  {params}")
    click.echo(f"\n{len(rows)} ops. halo: input pixels of context per side at the default "
               "parameters (* = depends on the parameters; global = whole image). "
               "name! = required. 'pixelmill ops NAME' for details.")


def _result_text(d: dict) -> str:
    results = d.get("result_dtypes")
    if not results:
        return ""
    if all(k == v for k, v in results.items()):
        text = "the input's dtype"
    elif len(set(results.values())) == 1:
        text = next(iter(results.values()))
    else:
        text = ", ".join(f"{k} -> {v}" for k, v in results.items())
    return f"  (result: {text}{', by default' if d['result_dtype_varies'] else ''})"


def _print_one(d: dict) -> None:
    click.echo(f"{d['name']}  ({d['family']}, output: {d['output']})")
    click.echo(f"  {d['summary']}")
    click.echo(f"  dtypes: {', '.join(d['dtypes'])}" + _result_text(d))
    click.echo(f"  halo:   {_rule_text(d['halo'], d['halo_varies'], 'halo')}"
               + ("  (depends on the parameters)" if d["halo_varies"] else ""))
    click.echo(f"  scale:  {_rule_text(d['scale'], d['scale_varies'], 'scale')}"
               + ("  (depends on the parameters)" if d["scale_varies"] else ""))
    click.echo("\nparameters:")
    if not d["params"]:
        click.echo("  (none)")
    for p in d["params"]:
        bits = [p["type"]]
        bits.append("required" if p["required"] else f"default {_fmt(p['default'])}")
        if "choices" in p:
            bits.append("one of " + ", ".join(_fmt(c) for c in p["choices"]))
        if "bounds" in p:
            sym = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
            bits.append(" and ".join(f"{sym[k]} {_fmt(v)}" for k, v in p["bounds"].items()))
        click.echo(f"  {p['name']}: {'; '.join(bits)}")
        if p["doc"]:
            click.echo(textwrap.indent(textwrap.fill(p["doc"], 76), "      "))
    body = d["doc"].split("\n\n", 1)[1] if "\n\n" in d["doc"] else ""
    # the Parameters section is shown above; keep the description, Returns, Raises, Examples
    body = re.sub(r"^Parameters\n-+\n.*?(?=^\w[\w ]*\n-+\n|\Z)", "", body, flags=re.S | re.M)
    if body.strip():
        click.echo("\n" + body.strip())


@click.command("ops")
@click.argument("name", required=False)
@click.option("--family", default=None, metavar="FAMILY",
              help="Only the ops of one family (geometry, color, filters, ...).")
@click.option("--schema", is_flag=True, help="Print the JSON Schema of pipeline files.")
@json_option
def ops(name: str | None, family: str | None, schema: bool, as_json: bool) -> None:
    """List the ops a pipeline can use, or show one op (NAME) in full."""
    from pixelmill.ops import get_op, registry
    from pixelmill.pipeline import pipeline_json_schema

    if schema:
        if name is not None or family is not None:  # the schema is of every op: not ignored
            raise InvalidParameterError(
                f"--schema: gives the schema of every op and takes no "
                f"{'NAME' if name is not None else '--family'}; run 'pixelmill ops --schema'",
                field="--schema")
        click.echo(json.dumps(pipeline_json_schema(), indent=2))
        return
    if name is not None:
        spec = get_op(name, where="NAME")
        if family is not None and family != spec.family:  # a contradiction, not a filter
            raise InvalidParameterError(
                f"--family: op {name!r} is in family {spec.family!r}, not {family!r}; "
                f"run 'pixelmill ops {name}' or 'pixelmill ops --family {family}'",
                field="--family")
        d = describe_op(spec)
        if as_json:
            click.echo(json.dumps(d, indent=2))
        else:
            _print_one(d)
        return
    specs = list(registry().values())
    if family is not None:
        families = sorted({s.family for s in specs})
        if family not in families:
            raise InvalidParameterError(
                f"--family: unknown family {family!r} (valid: {', '.join(families)})",
                field="--family")
        specs = [s for s in specs if s.family == family]
    rows = [describe_op(s) for s in specs]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        _print_list(rows)
