"""The one configuration of a mensa system, loaded from TOML and validated once.

A configuration file describes a *system*: one or more accelerators sharing a
DRAM. The same frozen object elaborates the RTL, drives the program compiler,
parameterises the cost model and the testbenches, and writes the register
header, so no parameter is written twice.

Every field carries its allowed values in its metadata; :func:`load` checks
unknown keys, types and ranges and raises :class:`ConfigError` with one line
that names the field, the value and what is allowed.
"""

import dataclasses
import enum
import hashlib
import json
import tomllib
import re
import typing
from importlib import resources
from dataclasses import dataclass, field
from pathlib import Path

from mensa.core.errors import UserError
from mensa.core.files import read_text_file

__all__ = [
    "ConfigError", "Dataflow", "CoreKind",
    "ArrayConfig", "BufferConfig", "NearMemConfig", "VectorConfig", "MemoryConfig", "EdgeTpuTemplate",
    "AcceleratorConfig", "DramConfig", "SystemConfig",
    "load", "loads", "presets", "from_dict", "to_dict", "to_toml", "config_hash", "mangled", "NAME_MAX", "CONFIG_BYTES_MAX",
]


class ConfigError(UserError):
    """A user's configuration is wrong. The message is one line: field, value, what is allowed."""


class Dataflow(enum.Enum):
    WEIGHT_STATIONARY = "ws"
    OUTPUT_STATIONARY = "os"


class CoreKind(enum.Enum):
    SYSTOLIC = "systolic"   # compute-centric, on-chip (Pascal, Edge TPU)
    NEARMEM = "nearmem"     # data-centric, in the logic layer of 3D-stacked memory (Pavlov, Jacquard)


def _f(default=dataclasses.MISSING, *, lo=None, hi=None, choices=None, doc="", pow2=False):
    meta = {"lo": lo, "hi": hi, "choices": choices, "doc": doc, "pow2": pow2}
    if default is dataclasses.MISSING:
        return field(metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class ArrayConfig:
    """A systolic array of ``rows`` x ``cols`` processing elements."""
    rows: int = _f(8, lo=1, hi=256, doc="PE rows (the reduction dimension K for weight-stationary)")
    cols: int = _f(8, lo=1, hi=256, doc="PE columns (the output-channel dimension N)")
    dataflow: Dataflow = _f(Dataflow.WEIGHT_STATIONARY, doc="ws: weight-stationary, os: output-stationary")
    input_bits: int = _f(8, lo=2, hi=16, doc="activation width, signed")
    weight_bits: int = _f(8, lo=2, hi=16, doc="weight width, signed")
    acc_bits: int = _f(32, lo=8, hi=48, doc="accumulator width, signed")

    @property
    def pes(self):
        return self.rows * self.cols


@dataclass(frozen=True)
class BufferConfig:
    """On-chip scratchpads of an accelerator (KiB of int8 data, int32 accumulators)."""
    weight_kib: int = _f(16, lo=1, hi=65536, doc="weight scratchpad")
    act_kib: int = _f(32, lo=1, hi=65536, doc="activation scratchpad")
    acc_kib: int = _f(16, lo=1, hi=65536, doc="accumulator buffer")
    banks: int = _f(2, lo=1, hi=64, doc="banks per scratchpad (2 = ping-pong)")


@dataclass(frozen=True)
class NearMemConfig:
    """A near-memory unit: ``vaults`` memory vaults, each with ``lanes`` MAC lanes."""
    vaults: int = _f(8, lo=1, hi=64, doc="vaults of the 3D-stacked memory, one port each")
    lanes: int = _f(8, lo=1, hi=64, doc="MAC lanes per vault")
    vault_bits: int = _f(64, lo=8, hi=1024, pow2=True, doc="data bits per vault port and cycle")
    vault_kib: int = _f(1024, lo=1, hi=1048576, doc="capacity of one vault")
    local_kib: int = _f(4, lo=1, hi=65536, doc="local buffer (inputs, state) per vault")
    lstm: bool = _f(False, doc="LSTM datapath (Pavlov): gate tables, cell and hidden state on chip")
    requant_passes: int = _f(1, lo=1, hi=64, doc="cycles the requantisers take a lane vector: lanes / requant_passes "
                                                 "lanes a cycle, from that share of the DSP blocks (divides lanes)")


@dataclass(frozen=True)
class VectorConfig:
    """A vector unit beside a systolic array: ``lanes`` int8 lanes (one channel each) and a line buffer
    of ``line_kib`` KiB holding the input rows a depthwise or pooling window spans."""
    lanes: int = _f(8, lo=1, hi=64, pow2=True, doc="lanes, one channel and one MAC per cycle each")
    line_kib: int = _f(8, lo=1, hi=65536, doc="line buffer: input rows of lanes-channel pixel vectors")


@dataclass(frozen=True)
class MemoryConfig:
    """The accelerator's memory interface (AXI4 master)."""
    data_bits: int = _f(64, lo=32, hi=1024, pow2=True, doc="AXI data width")
    addr_bits: int = _f(32, lo=16, hi=64, doc="AXI address width")
    max_burst: int = _f(16, lo=1, hi=256, doc="beats per AXI burst")


@dataclass(frozen=True)
class EdgeTpuTemplate:
    """The Edge TPU template's own parameters (Seshadri et al. 2021), kept as first-class fields.

    The template is a ``pe_rows`` x ``pe_cols`` grid of PEs; each PE has
    ``cores_per_pe`` cores and a PE memory; each core has ``lanes_per_core``
    SIMD compute lanes and a core memory for parameters.
    """
    pe_rows: int = _f(4, lo=1, hi=64)
    pe_cols: int = _f(4, lo=1, hi=64)
    cores_per_pe: int = _f(4, lo=1, hi=64)
    lanes_per_core: int = _f(64, lo=1, hi=256)
    core_mem_kib: int = _f(32, lo=1, hi=65536)
    pe_mem_kib: int = _f(2048, lo=1, hi=1048576)
    io_gbps: float = _f(32.0, lo=0.1, hi=4096.0, doc="off-chip I/O bandwidth, GB/s")
    param_cache: bool = _f(False, doc="the core memories keep a network's parameters across inferences, layer by "
                                      "layer in order as far as they fit (the Edge TPU compiler's caching); the "
                                      "rest stream over the I/O every inference")
    depthwise_lanes: bool = _f(False, doc="depthwise convolutions run on the cores' SIMD lanes, a channel and "
                                          "pixel per lane, not as one array product per channel")
    efficiency: float = _f(1.0, lo=0.01, hi=1.0, doc="sustained fraction of the array's modelled rate on matrix "
                                                     "products (a fitted figure: configs/edgetpu.toml)")


@dataclass(frozen=True)
class AcceleratorConfig:
    """One accelerator: a systolic or near-memory core with its buffers and interfaces."""
    name: str = _f(doc="identifier, used in module and file names")
    kind: CoreKind = _f(CoreKind.SYSTOLIC)
    clock_mhz: float = _f(200.0, lo=1.0, hi=5000.0)
    array: ArrayConfig = _f(ArrayConfig())
    buffers: BufferConfig = _f(BufferConfig())
    memory: MemoryConfig = _f(MemoryConfig())
    nearmem: NearMemConfig | None = _f(None)
    vector: VectorConfig | None = _f(None, doc="a vector unit (depthwise, pooling, element-wise ops); systolic only")
    edgetpu: EdgeTpuTemplate | None = _f(None)


@dataclass(frozen=True)
class DramConfig:
    """The DRAM the accelerators share."""
    bandwidth_gbps: float = _f(25.6, lo=0.1, hi=4096.0, doc="peak bandwidth, GB/s")
    latency_cycles: int = _f(20, lo=0, hi=10000, doc="read latency in accelerator cycles")


@dataclass(frozen=True)
class SystemConfig:
    """A heterogeneous system: accelerators sharing DRAM."""
    name: str = _f(doc="identifier of the system")
    accelerator: tuple[AcceleratorConfig, ...] = _f(doc="one or more [[accelerator]] tables")
    dram: DramConfig = _f(DramConfig())
    description: str = _f("", doc="why these sizes")

    def __getitem__(self, name):
        for acc in self.accelerator:
            if acc.name == name:
                return acc
        raise KeyError(name)


def _allowed(f):
    m = f.metadata
    if m.get("choices"):
        return "one of " + ", ".join(repr(c) for c in m["choices"])
    lo, hi = m.get("lo"), m.get("hi")
    text = f"{lo}..{hi}" if lo is not None else "any"
    if m.get("pow2"):
        text = "a power of two in " + text
    return text


def _convert(tp, value, path, f):
    origin = typing.get_origin(tp)
    if origin in (typing.Union, __import__("types").UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _convert(args[0], value, path, f)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a table, got {value!r}")
        return _build(tp, value, path)
    if origin is tuple:
        (item_tp, _) = typing.get_args(tp)
        if isinstance(value, dict):
            value = [value]
        if not isinstance(value, list) or not value:
            raise ConfigError(f"{path}: expected one or more tables, got {value!r}")
        return tuple(_convert(item_tp, v, f"{path}[{i}]", f) for i, v in enumerate(value))
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        allowed = [e.value for e in tp]
        if value not in allowed:
            raise ConfigError(f"{path}: {value!r} is not allowed; allowed: one of {', '.join(map(repr, allowed))}")
        return tp(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {value!r}; allowed {_allowed(f)}")
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {value!r}; allowed {_allowed(f)}")
        value = float(value)
    elif tp is str:
        if not isinstance(value, str) or not value and f.default is dataclasses.MISSING:
            raise ConfigError(f"{path}: expected a non-empty string, got {value!r}")
        if f.name == "name" and not value.replace("_", "a").replace("-", "a").isalnum():
            raise ConfigError(f"{path}: {value!r} is not allowed; allowed: letters, digits, '-' and '_'")
        return value
    m = f.metadata
    if m.get("lo") is not None and not (m["lo"] <= value <= m["hi"]):
        raise ConfigError(f"{path}: {value!r} is out of range; allowed {_allowed(f)}")
    if m.get("pow2") and value & (value - 1):
        raise ConfigError(f"{path}: {value!r} is not a power of two; allowed {_allowed(f)}")
    return value


def _build(cls, table, path):
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in table:
        if key not in fields:
            where = f"{path}.{key}" if path else key
            raise ConfigError(f"{where}: unknown field; allowed: {', '.join(fields)}")
    kwargs = {}
    for name, f in fields.items():
        where = f"{path}.{name}" if path else name
        if name in table:
            kwargs[name] = _convert(hints[name], table[name], where, f)
        elif f.default is dataclasses.MISSING:
            raise ConfigError(f"{where}: missing; allowed {_allowed(f) if f.metadata.get('lo') is not None else f.metadata.get('doc') or 'a value'}")
    return cls(**kwargs)


NAME_MAX = 64
#: the array widths an accelerator runs (the numeric contract); the bare array takes others
ACCELERATOR_WIDTHS = {"input_bits": 8, "weight_bits": 8, "acc_bits": 32}
CONFIG_BYTES_MAX = 1 << 20      # a config is a few KiB; more is a wrong file, not a config
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*", re.ASCII)


def _check_name(name, where):
    """A name becomes part of Verilog module, C macro and file names: ASCII, a letter first."""
    if not _NAME.fullmatch(name) or len(name) > NAME_MAX:
        shown = name if len(name) <= 40 else name[:40] + "..."
        raise ConfigError(f"{where}: {shown!r} is not allowed; allowed: 1..{NAME_MAX} ASCII letters, digits, "
                          f"'_' or '-', starting with a letter")


def mangled(name):
    """``name`` as it appears in module, macro and file names ('-' becomes '_')."""
    return name.replace("-", "_")


def _check_system(system):
    _check_name(system.name, "name")
    names = [a.name for a in system.accelerator]
    seen = {}
    for i, acc in enumerate(system.accelerator):
        path = f"accelerator[{i}]"
        _check_name(acc.name, f"{path}.name")
        if names.count(acc.name) > 1:
            raise ConfigError(f"{path}.name: {acc.name!r} is used twice; allowed: a name unique in the system")
        key = mangled(acc.name).lower()
        if key in seen:
            raise ConfigError(f"{path}.name: {acc.name!r} and {seen[key]!r} name the same Verilog module and files "
                              f"(after '-' -> '_' and case); allowed: names that differ otherwise")
        seen[key] = acc.name
        if acc.kind is CoreKind.NEARMEM and acc.nearmem is None:
            raise ConfigError(f"{path}.nearmem: missing; allowed: a [accelerator.nearmem] table when kind = 'nearmem'")
        if acc.kind is CoreKind.SYSTOLIC and acc.nearmem is not None:
            raise ConfigError(f"{path}.nearmem: not allowed when kind = 'systolic'; allowed: only with kind = 'nearmem'")
        if acc.nearmem is not None and acc.nearmem.lanes % acc.nearmem.requant_passes:
            raise ConfigError(f"{path}.nearmem.requant_passes: {acc.nearmem.requant_passes} does not divide lanes = "
                              f"{acc.nearmem.lanes}; allowed: a divisor of lanes")
        if acc.kind is not CoreKind.SYSTOLIC and acc.vector is not None:
            raise ConfigError(f"{path}.vector: not allowed when kind = {acc.kind.value!r}; allowed: only with "
                              f"kind = 'systolic' (the vector unit shares the array's DMA and registers)")
        for field, width in ACCELERATOR_WIDTHS.items():
            value = getattr(acc.array, field)
            if value != width:
                raise ConfigError(f"{path}.array.{field}: {value}; allowed: {width} (an accelerator runs the golden "
                                  f"model's int8 x int8 -> int32 arithmetic)")
    return system


def _check_unused_tables(table):
    """A near-memory accelerator has no systolic array and is no Edge TPU template: such a table would be
    silently ignored, so it is refused."""
    for i, acc in enumerate(table.get("accelerator", ()) if isinstance(table, dict) else ()):
        if isinstance(acc, dict) and acc.get("kind") == CoreKind.NEARMEM.value:
            for key in ("array", "edgetpu"):
                if key in acc:
                    raise ConfigError(f"accelerator[{i}].{key}: not used by kind = 'nearmem'; allowed: only with "
                                      f"kind = 'systolic' (a near-memory unit is sized by its nearmem table)")


def from_dict(table):
    """Build and validate a :class:`SystemConfig` from a parsed TOML table."""
    system = _check_system(_build(SystemConfig, table, ""))
    _check_unused_tables(table)
    return system


def loads(text, source="<string>"):
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{source}: not valid TOML: {e}") from None
    except RecursionError:
        raise ConfigError(f"{source}: tables or arrays nested too deeply; allowed: a config as configs/ "
                          f"shows it") from None
    return from_dict(table)


def presets():
    """The names of the presets shipped with mensa (``configs/NAME.toml``), sorted."""
    return sorted(p.name.removesuffix(".toml") for p in resources.files("mensa.configs").iterdir()
                  if p.name.endswith(".toml"))


def _preset(name):
    return resources.files("mensa.configs").joinpath(f"{name}.toml")


def load(path):
    """Load and validate a configuration: a TOML file, or a preset by name (``"pascal"``).

    A path that exists is read as a file; otherwise a name with no folder and no suffix is
    looked up among :func:`presets`. :class:`ConfigError` names what is wrong.
    """
    text = str(path)
    if not Path(path).exists() and Path(text).name == text and "." not in text:
        if text not in presets():
            raise ConfigError(f"{text}: neither a config file nor a preset; allowed: a TOML file or one of "
                              f"{', '.join(presets())}")
        return loads(_preset(text).read_text(), f"preset {text}")
    path = Path(path)
    text = read_text_file(path, "config file", CONFIG_BYTES_MAX, ConfigError)
    try:
        return loads(text, str(path))
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}" if not str(e).startswith(str(path)) else str(e)) from None


def to_dict(obj):
    """The plain-data (JSON/TOML-able) form of a config object."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if getattr(obj, f.name) is not None}
    if isinstance(obj, tuple):
        return [to_dict(v) for v in obj]
    if isinstance(obj, enum.Enum):
        return obj.value
    return obj


def config_hash(obj):
    """A short stable hash of a config object (system, accelerator or part), for build caches."""
    text = json.dumps(to_dict(obj), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)        # a JSON string is a valid TOML basic string
    raise TypeError(f"no TOML form for {v!r}")


def _toml_table(table, prefix, lines):
    plain = {k: v for k, v in table.items() if not isinstance(v, (dict, list))}
    for key, value in plain.items():
        lines.append(f"{key} = {_toml_value(value)}")
    for key, value in table.items():
        if isinstance(value, dict):
            lines.append(f"\n[{prefix}{key}]")
            _toml_table(value, f"{prefix}{key}.", lines)
        elif isinstance(value, list):
            for item in value:
                lines.append(f"\n[[{prefix}{key}]]")
                _toml_table(item, f"{prefix}{key}.", lines)


def to_toml(system, comment=""):
    """``system`` as TOML text that :func:`loads` reads back to an equal config; ``comment`` heads it as
    ``#`` lines (why these sizes)."""
    lines = [f"# {line}".rstrip() for line in comment.splitlines()]
    table = to_dict(system)
    for acc in table["accelerator"]:
        if acc["kind"] == CoreKind.NEARMEM.value:
            del acc["array"]            # a near-memory unit has none; loads refuses the table
    _toml_table(table, "", lines)
    return "\n".join(lines).lstrip("\n") + "\n"
