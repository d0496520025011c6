"""Energy per action and silicon area: the editable tables behind mensa's energy figures.

Every default is a published figure or a choice of mensa's, and the source of
each is written next to it in :data:`ENERGY_SOURCES` and :data:`AREA_SOURCES`.
Units: energy in picojoules (pJ), area in square micrometres (um^2), power in
milliwatts per square millimetre (mW/mm^2). All defaults are for 45 nm at 0.9 V
(Horowitz, "Computing's energy problem", ISSCC 2014, the table every
accelerator paper quotes); :meth:`EnergyTable.scaled` and
:meth:`AreaTable.scaled` move them to another node by one factor each, so a
user who has 28 nm or 16 nm figures changes one number.

An SRAM access costs more the larger the SRAM: the per-byte energy is
interpolated log-log between Horowitz's three points (8 KiB, 32 KiB, 1 MiB,
64-bit access), which follow ~sqrt(size) closely.

The tables are plain frozen dataclasses: edit with :func:`dataclasses.replace`,
or load from TOML with :func:`energy_from_dict` / :func:`area_from_dict`.
"""

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from mensa.core.config import ConfigError, CoreKind
from mensa.model.cost import buffer_bytes

__all__ = [
    "EnergyTable", "AreaTable", "ENERGY_SOURCES", "AREA_SOURCES",
    "energy_from_dict", "area_from_dict", "sram_pj_per_byte", "accelerator_area_um2",
    "system_area_mm2", "area_breakdown_um2", "leakage_mw", "COMPONENTS", "layer_energy",
]


@dataclass(frozen=True)
class EnergyTable:
    """Energy per action, pJ (45 nm defaults)."""
    mac_pj: float = 0.2 + 0.1            # int8 multiply + int32 accumulate add
    vector_op_pj: float = 0.1            # one element of an element-wise op (32-bit add)
    requant_pj: float = 3.1              # requantise one output element (32-bit multiply)
    sram_points_kib: tuple[float, ...] = (8.0, 32.0, 1024.0)
    sram_points_pj_per_byte: tuple[float, ...] = (10.0 / 8, 20.0 / 8, 100.0 / 8)
    dram_pj_per_byte: float = 1300.0 / 8      # off-chip DRAM, 64-bit access 1.3 nJ (lower bound)
    vault_pj_per_byte: float = 4.0 * 8        # in-stack DRAM vault read from the logic layer, ~4 pJ/bit
    sram_leak_mw_per_mm2: float = 20.0
    logic_leak_mw_per_mm2: float = 10.0
    node_nm: int = 45

    def scaled(self, factor, node_nm):
        """The table with every dynamic energy and leakage multiplied by ``factor``."""
        if not factor > 0:
            raise ValueError(f"factor must be positive, not {factor!r}")
        fields = {f.name: getattr(self, f.name) * factor for f in dataclasses.fields(self)
                  if f.name.endswith(("_pj", "_per_byte", "_per_mm2")) and f.name != "sram_points_pj_per_byte"}
        fields["sram_points_pj_per_byte"] = tuple(v * factor for v in self.sram_points_pj_per_byte)
        return dataclasses.replace(self, node_nm=node_nm, **fields)


@dataclass(frozen=True)
class AreaTable:
    """Silicon area per unit, um^2 (45 nm defaults)."""
    mac_um2: float = 282.0 + 137.0 + 48 * 4.5   # int8 multiplier + int32 adder + ~48 pipeline flops
    sram_um2_per_kib: float = 8192 * 0.346 / 0.5  # 6T cell 0.346 um^2, 50% array efficiency
    vector_lane_um2: float = 137.0 + 3495.0 / 4  # post-processing lane: adder + a share of a 32-bit multiplier
    vault_logic_um2: float = 50_000.0        # vault controller + local buffer control in the logic layer
    control_um2: float = 100_000.0           # sequencer, DMA, AXI interfaces of one accelerator
    node_nm: int = 45

    def scaled(self, factor, node_nm):
        if not factor > 0:
            raise ValueError(f"factor must be positive, not {factor!r}")
        fields = {f.name: getattr(self, f.name) * factor for f in dataclasses.fields(self) if f.name.endswith("um2") or f.name.endswith("per_kib")}
        return dataclasses.replace(self, node_nm=node_nm, **fields)


ENERGY_SOURCES = {
    "mac_pj": "Horowitz ISSCC 2014, 45 nm: 8-bit multiply 0.2 pJ + 32-bit add 0.1 pJ",
    "vector_op_pj": "Horowitz ISSCC 2014, 45 nm: 32-bit add 0.1 pJ",
    "requant_pj": "Horowitz ISSCC 2014, 45 nm: 32-bit multiply 3.1 pJ (the Q31 multiplier)",
    "sram_points_pj_per_byte": "Horowitz ISSCC 2014, 45 nm: 64-bit SRAM read 10 pJ (8 KB), 20 pJ (32 KB), 100 pJ (1 MB)",
    "dram_pj_per_byte": "Horowitz ISSCC 2014: DRAM 1.3-2.6 nJ per 64-bit access; the lower bound is used",
    "vault_pj_per_byte": "mensa's choice, order of the in-stack figures used for HMC near-data accelerators "
                         "(~4 pJ/bit from the logic layer, no SerDes; cf. HMC 10.48 pJ/bit with links, Jeddeloh & Keeth VLSI 2012)",
    "sram_leak_mw_per_mm2": "mensa's choice for a 45 nm low-power SRAM (order of CACTI LSTP figures)",
    "logic_leak_mw_per_mm2": "mensa's choice for 45 nm low-power logic",
}

AREA_SOURCES = {
    "mac_um2": "Horowitz ISSCC 2014, 45 nm: 8-bit multiplier 282 um^2 + 32-bit adder 137 um^2; "
               "plus 48 flops at ~4.5 um^2 (mensa's choice)",
    "sram_um2_per_kib": "45 nm 6T cell 0.346 um^2 (Intel 45 nm, Mistry et al. IEDM 2007) at 50% array efficiency (mensa's choice)",
    "vector_lane_um2": "Horowitz ISSCC 2014: 32-bit adder 137 um^2 + a quarter of a 32-bit multiplier (3495 um^2)",
    "vault_logic_um2": "mensa's choice: a vault controller in the logic layer",
    "control_um2": "mensa's choice: sequencer, DMA and AXI interfaces",
}


def _from_dict(cls, table, what):
    names = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in table.items():
        if key not in names:
            raise ConfigError(f"{what}.{key}: unknown field; allowed: {', '.join(names)}")
        if key == "node_nm":
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{what}.{key}: {value!r}; allowed: a positive integer (nm)")
        elif key.startswith("sram_points"):
            if not isinstance(value, list) or len(value) < 2 or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in value):
                raise ConfigError(f"{what}.{key}: {value!r}; allowed: a list of at least two positive numbers")
            value = tuple(float(v) for v in value)
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ConfigError(f"{what}.{key}: {value!r}; allowed: a non-negative number")
        kwargs[key] = value
    obj = cls(**kwargs)
    if cls is EnergyTable and len(obj.sram_points_kib) != len(obj.sram_points_pj_per_byte):
        raise ConfigError(f"{what}.sram_points_kib: {len(obj.sram_points_kib)} points but "
                          f"{len(obj.sram_points_pj_per_byte)} energies; allowed: the same number")
    return obj


def energy_from_dict(table):
    """An :class:`EnergyTable` from a (TOML) table; unknown or bad fields raise :class:`ConfigError`."""
    return _from_dict(EnergyTable, table, "energy")


def area_from_dict(table):
    """An :class:`AreaTable` from a (TOML) table; unknown or bad fields raise :class:`ConfigError`."""
    return _from_dict(AreaTable, table, "area")


def sram_pj_per_byte(kib, table=EnergyTable()):
    """Energy to read or write one byte of an SRAM of ``kib`` KiB (array-friendly).

    Log-log interpolation between the table's points, extrapolated with the
    slope of the nearest pair outside them.
    """
    x = np.log(np.asarray(table.sram_points_kib, dtype=float))
    y = np.log(np.asarray(table.sram_points_pj_per_byte, dtype=float))
    k = np.log(np.maximum(np.asarray(kib, dtype=float), 1e-3))
    lo_slope = (y[1] - y[0]) / (x[1] - x[0])
    hi_slope = (y[-1] - y[-2]) / (x[-1] - x[-2])
    out = np.interp(k, x, y)
    out = np.where(k < x[0], y[0] + (k - x[0]) * lo_slope, out)
    out = np.where(k > x[-1], y[-1] + (k - x[-1]) * hi_slope, out)
    return np.exp(out)


def area_breakdown_um2(acc, table=AreaTable()):
    """Area of one accelerator by component: ``{"mac", "sram", "vector", "vault", "control"}``, um^2."""
    if acc.kind is CoreKind.NEARMEM:
        nm = acc.nearmem
        macs = nm.vaults * nm.lanes
        sram_kib = nm.vaults * nm.local_kib + acc.buffers.act_kib
        vector = nm.vaults * nm.lanes
        vault = nm.vaults
    else:
        macs = acc.array.rows * acc.array.cols
        sram_kib = sum(buffer_bytes(acc)) / 1024
        vector = acc.array.cols
        vault = 0
        if acc.vector is not None:          # the vector unit: a MAC and a requantising lane per lane, its line buffer
            macs += acc.vector.lanes
            vector += acc.vector.lanes
            sram_kib += acc.vector.line_kib
    return {
        "mac": macs * table.mac_um2,
        "sram": sram_kib * table.sram_um2_per_kib,
        "vector": vector * table.vector_lane_um2,
        "vault": vault * table.vault_logic_um2,
        "control": table.control_um2,
    }


def accelerator_area_um2(acc, table=AreaTable()):
    return math.fsum(area_breakdown_um2(acc, table).values())


def system_area_mm2(system, table=AreaTable()):
    """Silicon area of all accelerators of a system (mm^2); DRAM dies are not counted."""
    return math.fsum(accelerator_area_um2(a, table) for a in system.accelerator) / 1e6


def leakage_mw(acc, energy=EnergyTable(), area=AreaTable()):
    """Static power of one accelerator (mW): SRAM and logic area times their leakage densities."""
    parts = area_breakdown_um2(acc, area)
    sram = parts["sram"] / 1e6
    logic = (parts["mac"] + parts["vector"] + parts["vault"] + parts["control"]) / 1e6
    return sram * energy.sram_leak_mw_per_mm2 + logic * energy.logic_leak_mw_per_mm2


#: Components of :func:`layer_energy`, in the order plots stack them.
COMPONENTS = ("mac", "vector", "weight_buf", "act_buf", "acc_buf", "local_buf", "vault", "dram", "leakage")


def layer_energy(cost, energy=EnergyTable(), area=AreaTable()):
    """Energy (pJ) of every (layer, accelerator) pair of a :class:`~mensa.model.cost.Cost`, by component.

    Returns a dict ``{component: (L, A) array}`` over :data:`COMPONENTS`; the
    entries are ``inf`` where the layer is not supported. ``leakage`` is the
    accelerator's own static energy over the layer's run time; the scheduler
    adds the idle accelerators' leakage.
    """
    acc = cost.accelerators
    kib = lambda b: np.maximum(b / 1024, 1e-3)
    leak_mw = np.array([leakage_mw(a, energy, area) for a in acc.accelerators])
    parts = {
        "mac": cost.macs * energy.mac_pj,
        "vector": cost.vector_ops * energy.vector_op_pj + cost.requant_ops * energy.requant_pj,
        "weight_buf": cost.wbuf_bytes * sram_pj_per_byte(kib(acc.wbuf), energy),
        "act_buf": cost.abuf_bytes * sram_pj_per_byte(kib(acc.abuf), energy),
        "acc_buf": cost.accbuf_bytes * sram_pj_per_byte(kib(acc.accbuf), energy),
        "local_buf": cost.local_bytes * sram_pj_per_byte(kib(acc.local), energy),
        "vault": cost.vault_bytes * energy.vault_pj_per_byte,
        "dram": cost.dram_bytes * energy.dram_pj_per_byte,
        "leakage": cost.seconds * leak_mw * 1e9,      # mW x s = 1e-3 J = 1e9 pJ
    }
    return {k: np.where(cost.supported, v, np.inf) for k, v in parts.items()}
