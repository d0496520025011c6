"""Design spaces as data: the parameters of a configuration a search may change, and their values.

A space is a TOML file (the built-in ones are ``configs/spaces/NAME.toml``)::

    name = "my-space"
    base = "pascal"                  # a preset, or a config file beside the space file
    [[param]]
    name = "side"                    # one value sets every path: a square array
    paths = ["pascal.array.rows", "pascal.array.cols"]
    values = [8, 16, 32, 64]         # or lo/hi/step, or lo/hi and pow2 = true
    source = "why these values"
    [constraints]                    # optional; a search's own arguments override area_mm2, latency_ms
    area_mm2 = 10.0
    dsp_max = 156                    # FPGA bounds: DSP blocks (one per int8 MAC) and block-RAM KiB
    bram_kib_max = 468

A path is ``ACCELERATOR.FIELD[.FIELD]`` (an accelerator of the base by name) or ``dram.FIELD``.
Every value of every parameter is checked against the config's own ranges when the space is
loaded, so every point of a space is a config that :func:`mensa.core.config.load` accepts.

One rule is derived rather than searched: an accelerator with an Edge TPU template table runs
its MACs (``pe_rows x pe_cols x cores_per_pe x lanes_per_core``) on a ``rows x cols`` array with
``rows`` the largest divisor of the MACs not above its square root (configs/edgetpu.toml: 4096
MACs on 64 x 64). A template whose array would exceed the config's 256 x 256 is an infeasible
point (a constraint), not an error.

A point is a tuple of value indices, one per parameter (``Space.params`` order).
"""

import dataclasses
import functools
import math
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from mensa.core.config import (ArrayConfig, ConfigError, CoreKind, SystemConfig, from_dict, load, to_dict)
from mensa.core.errors import UserError
from mensa.core.files import read_text_file

__all__ = ["SpaceError", "Param", "Constraints", "Space", "load_space", "loads_space", "spaces", "template_array",
           "template_overflow", "ARRAY_MAX"]

SPACE_BYTES_MAX = 1 << 20
ARRAY_MAX = next(f.metadata["hi"] for f in dataclasses.fields(ArrayConfig) if f.name == "rows")
VALUES_MAX = 4096       # values of one parameter: more is a mistake, not a space


class SpaceError(UserError):
    """A design space file is wrong. One line: the key, the value, what is allowed."""


@dataclass(frozen=True)
class Param:
    """One searched parameter: the config fields it sets and the values it takes (sorted)."""
    name: str
    paths: tuple[str, ...]
    values: tuple
    source: str = ""


@dataclass(frozen=True)
class Constraints:
    """Feasibility bounds of a space; ``None`` is no bound."""
    area_mm2: float | None = None
    latency_ms: float | None = None
    dsp_max: int | None = None
    bram_kib_max: float | None = None


@dataclass(frozen=True)
class Space:
    """A base system and the parameters a search changes in it."""
    name: str
    base: SystemConfig
    params: tuple[Param, ...]
    constraints: Constraints = Constraints()
    description: str = ""

    @property
    def size(self):
        """Points in the space."""
        return math.prod(len(p.values) for p in self.params)

    @property
    def shape(self):
        return tuple(len(p.values) for p in self.params)

    def values(self, point):
        """``{param name: value}`` of a point (a tuple of value indices)."""
        return {p.name: p.values[i] for p, i in zip(self.params, point)}

    def point(self, values):
        """The point with these ``{param name: value}``; ``None`` if a value is not in the space.
        Parameters not given take the base config's value (or the first value if the base's is not one)."""
        out = []
        for p in self.params:
            v = values.get(p.name, self._base_value(p))
            if v not in p.values:
                return None
            out.append(p.values.index(v))
        return tuple(out)

    def _base_value(self, p):
        v = _get(self.base, p.paths[0])
        return v if v in p.values else p.values[0]

    def config(self, point):
        """The :class:`SystemConfig` of a point (not re-validated: every value was checked at load)."""
        # One replace per changed table: this runs for every point a search evaluates.
        changes = {}
        for p, i in zip(self.params, point):
            for j, names in self._targets[p.name]:
                node = changes.setdefault(j, {})
                for name in names[:-1]:
                    node = node.setdefault(name, {})
                node[names[-1]] = p.values[i]
        system = self.base
        accs = list(system.accelerator)
        for j, tree in changes.items():
            if j is None:
                system = dataclasses.replace(system, dram=_apply(system.dram, tree))
            else:
                accs[j] = _apply(accs[j], tree)
        return dataclasses.replace(system, accelerator=tuple(_with_template_array(a) for a in accs))

    @functools.cached_property
    def _targets(self):
        return {p.name: [(lambda j, rest: (j, rest.split(".")))(*_split(self.base, path)) for path in p.paths]
                for p in self.params}

    def points(self):
        """Every point, as an ``(size, params)`` int array (small spaces only)."""
        grids = np.meshgrid(*(np.arange(n) for n in self.shape), indexing="ij")
        return np.stack([g.ravel() for g in grids], axis=1).reshape(-1, len(self.params))


def template_array(macs):
    """``(rows, cols)`` of the array that runs a template's ``macs``: rows the largest divisor not
    above the square root."""
    rows = math.isqrt(macs)
    while macs % rows:
        rows -= 1
    return rows, macs // rows


def _with_template_array(acc):
    t = acc.edgetpu
    if t is None or acc.kind is not CoreKind.SYSTOLIC:
        return acc
    rows, cols = template_array(t.pe_rows * t.pe_cols * t.cores_per_pe * t.lanes_per_core)
    if (rows, cols) == (acc.array.rows, acc.array.cols):
        return acc
    # Beyond the config's largest array the point is infeasible; the array is kept as large as allowed
    # so the config stays loadable, and :func:`template_overflow` tells the search.
    rows, cols = min(rows, ARRAY_MAX), min(cols, ARRAY_MAX)
    return dataclasses.replace(acc, array=dataclasses.replace(acc.array, rows=rows, cols=cols))


def template_overflow(system):
    """The accelerators whose template MACs exceed the largest array a config allows (their names)."""
    out = []
    for a in system.accelerator:
        t = a.edgetpu
        if t is not None and max(template_array(t.pe_rows * t.pe_cols * t.cores_per_pe * t.lanes_per_core)) > ARRAY_MAX:
            out.append(a.name)
    return out


def _split(system, path):
    head, _, rest = path.partition(".")
    if head == "dram":
        return None, rest
    for i, a in enumerate(system.accelerator):
        if a.name == head:
            return i, rest
    return -1, rest


def _get(system, path):
    i, rest = _split(system, path)
    obj = system.dram if i is None else system.accelerator[i]
    for name in rest.split("."):
        obj = getattr(obj, name)
    return obj


def _apply(obj, tree):
    return dataclasses.replace(obj, **{k: _apply(getattr(obj, k), v) if isinstance(v, dict) else v
                                       for k, v in tree.items()})


def _replace_in(obj, names, value):
    if len(names) == 1:
        return dataclasses.replace(obj, **{names[0]: value})
    return dataclasses.replace(obj, **{names[0]: _replace_in(getattr(obj, names[0]), names[1:], value)})


def _set(system, path, value):
    i, rest = _split(system, path)
    if i is None:
        return dataclasses.replace(system, dram=_replace_in(system.dram, rest.split("."), value))
    accs = list(system.accelerator)
    accs[i] = _replace_in(accs[i], rest.split("."), value)
    return dataclasses.replace(system, accelerator=tuple(accs))


def _check_path(base, path, where):
    if not isinstance(path, str) or "." not in path:
        raise SpaceError(f"{where}: {path!r} is not a path; allowed: 'ACCELERATOR.FIELD[.FIELD]' or 'dram.FIELD'")
    i, rest = _split(base, path)
    if i == -1:
        names = ", ".join(a.name for a in base.accelerator)
        raise SpaceError(f"{where}: {path!r} names no accelerator of {base.name}; allowed: dram or one of {names}")
    table = to_dict(base.dram if i is None else base.accelerator[i])
    node = table
    for name in rest.split("."):
        if not isinstance(node, dict) or name not in node:
            allowed = ", ".join(node) if isinstance(node, dict) else "none (a value)"
            raise SpaceError(f"{where}: {path!r}: no field {name!r} there; allowed: {allowed}")
        node = node[name]
    if isinstance(node, (dict, list)) or isinstance(node, str) and path.endswith(".name"):
        raise SpaceError(f"{where}: {path!r} is a table or a name, not a value a search can change")


def _number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _values(t, where):
    if "values" in t:
        values = t["values"]
        if not isinstance(values, list) or not values:
            raise SpaceError(f"{where}.values: {values!r}; allowed: a non-empty list")
    elif "lo" in t and "hi" in t:
        lo, hi, step = t["lo"], t["hi"], t.get("step", 1)
        if not all(isinstance(x, int) and not isinstance(x, bool) for x in (lo, hi, step)) or step < 1 or lo > hi:
            raise SpaceError(f"{where}: lo {lo!r}, hi {hi!r}, step {step!r}; allowed: integers, lo <= hi, step >= 1")
        if t.get("pow2", False):
            if lo < 1:
                raise SpaceError(f"{where}.lo: {lo}; allowed: at least 1 with pow2")
            values = [1 << k for k in range(lo.bit_length() - 1, hi.bit_length()) if lo <= 1 << k <= hi]
        else:
            if (hi - lo) // step + 1 > VALUES_MAX:
                raise SpaceError(f"{where}: {(hi - lo) // step + 1} values; allowed: at most {VALUES_MAX}")
            values = list(range(lo, hi + 1, step))
    else:
        raise SpaceError(f"{where}: no values; allowed: values = [...], or lo and hi (with step or pow2 = true)")
    if len(values) > VALUES_MAX:
        raise SpaceError(f"{where}: {len(values)} values; allowed: at most {VALUES_MAX}")
    kinds = {type(v) for v in values}
    if not (kinds <= {int, float} or kinds == {str} or kinds == {bool}):
        raise SpaceError(f"{where}.values: {values!r}; allowed: numbers, strings or booleans, all of one kind")
    if len(set(values)) != len(values):
        raise SpaceError(f"{where}.values: {values!r} repeats a value; allowed: distinct values")
    return tuple(sorted(values)) if kinds <= {int, float} else tuple(values)


_PARAM_KEYS = ("name", "path", "paths", "values", "lo", "hi", "step", "pow2", "source")
_TOP_KEYS = ("name", "description", "base", "param", "constraints")
_CONSTRAINT_KEYS = tuple(f.name for f in dataclasses.fields(Constraints))


def _param(t, base, i):
    where = f"param[{i}]"
    if not isinstance(t, dict):
        raise SpaceError(f"{where}: expected a table, got {t!r}")
    for key in t:
        if key not in _PARAM_KEYS:
            raise SpaceError(f"{where}.{key}: unknown key; allowed: {', '.join(_PARAM_KEYS)}")
    name = t.get("name")
    if not isinstance(name, str) or not name.replace("_", "a").isalnum():
        raise SpaceError(f"{where}.name: {name!r}; allowed: letters, digits and '_'")
    paths = t.get("paths", [t["path"]] if "path" in t else None)
    if not isinstance(paths, list) or not paths:
        raise SpaceError(f"{where} ({name}): no path; allowed: path = 'ACC.FIELD' or paths = [...]")
    for path in paths:
        _check_path(base, path, f"{where} ({name})")
    values = _values(t, f"{where} ({name})")
    # Every value through the config's own checks, one at a time: fields are checked independently,
    # so a point of the space is a valid config (the derived template array aside: a constraint).
    for v in values:
        table = to_dict(base)
        for path in paths:
            j, rest = _split(base, path)
            node = table["dram"] if j is None else table["accelerator"][j]
            *head, last = rest.split(".")
            for part in head:
                node = node[part]
            node[last] = v
        for acc in table["accelerator"]:
            if acc["kind"] == CoreKind.NEARMEM.value:
                acc.pop("array", None)
        try:
            from_dict(table)
        except ConfigError as e:
            raise SpaceError(f"{where} ({name}): value {v!r} makes no valid config: {e}") from None
    return Param(name=name, paths=tuple(paths), values=values, source=str(t.get("source", "")))


def loads_space(text, source="<string>", folder=Path(".")):
    """A :class:`Space` from TOML text; ``folder`` resolves a base config given as a relative path."""
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SpaceError(f"{source}: not valid TOML: {e}") from None
    try:
        return _from_table(table, folder)
    except SpaceError as e:
        raise SpaceError(f"{source}: {e}") from None


def _from_table(table, folder):
    for key in table:
        if key not in _TOP_KEYS:
            raise SpaceError(f"{key}: unknown key; allowed: {', '.join(_TOP_KEYS)}")
    name = table.get("name")
    if not isinstance(name, str) or not name:
        raise SpaceError(f"name: {name!r}; allowed: a non-empty string")
    base_name = table.get("base")
    if not isinstance(base_name, str) or not base_name:
        raise SpaceError(f"base: {base_name!r}; allowed: a preset name or a config file")
    path = folder / base_name
    try:
        base = load(path if path.exists() else base_name)
    except ConfigError as e:
        raise SpaceError(f"base: {e}") from None
    params = table.get("param")
    if not isinstance(params, list) or not params:
        raise SpaceError("param: missing; allowed: one or more [[param]] tables")
    params = tuple(_param(t, base, i) for i, t in enumerate(params))
    names = [p.name for p in params]
    for p in params:
        if names.count(p.name) > 1:
            raise SpaceError(f"param: {p.name!r} named twice; allowed: distinct names")
    paths = [x for p in params for x in p.paths]
    for x in paths:
        if paths.count(x) > 1:
            raise SpaceError(f"param: path {x!r} set by two parameters; allowed: one parameter per field")
    c = table.get("constraints", {})
    if not isinstance(c, dict):
        raise SpaceError(f"constraints: {c!r}; allowed: a table")
    for key, value in c.items():
        if key not in _CONSTRAINT_KEYS:
            raise SpaceError(f"constraints.{key}: unknown key; allowed: {', '.join(_CONSTRAINT_KEYS)}")
        if not _number(value) or not value > 0 or not math.isfinite(value):
            raise SpaceError(f"constraints.{key}: {value!r}; allowed: a positive number")
    return Space(name=name, base=base, params=params, constraints=Constraints(**c),
                 description=str(table.get("description", "")))


def spaces():
    """The names of the built-in spaces (``configs/spaces/NAME.toml``), sorted."""
    folder = resources.files("mensa.configs").joinpath("spaces")
    return sorted(p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml"))


def load_space(path):
    """A space from a TOML file, or a built-in space by name (``"edgetpu"``)."""
    text = str(path)
    if not Path(path).exists() and Path(text).name == text and "." not in text:
        if text not in spaces():
            raise SpaceError(f"--space {text}: neither a space file nor a built-in space; allowed: a TOML file "
                             f"or one of {', '.join(spaces())}")
        resource = resources.files("mensa.configs").joinpath("spaces", f"{text}.toml")
        return loads_space(resource.read_text(), f"space {text}")
    path = Path(path)
    text = read_text_file(path, "space file", SPACE_BYTES_MAX, SpaceError)
    return loads_space(text, str(path), path.parent)
