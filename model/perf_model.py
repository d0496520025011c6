"""A learned performance model: an accelerator's latency and energy for an unseen NAS-Bench-101 cell.

The Edge TPU evaluation (Seshadri et al. 2021) trained graph neural networks to stand in for its
cycle-accurate simulator. mensa uses gradient-boosted trees (LightGBM) on features of the cell's
graph (:data:`mensa.model.study.GRAPH_FEATURES`), the network's size (MACs, parameters, layers,
activation bytes: a walk of the cell, no cost model) and the class's template parameters, so one
model covers every class. Why trees and not a GNN: a NAS-Bench-101 cell has at most 7 vertices,
so a handful of graph counts describe it completely enough; trees train in seconds on two cores
from the study's own table, predict in microseconds, and need no deep-learning framework.
The targets are the logarithms of latency and energy, so the trees fit ratios, not differences.
"""

import json
from pathlib import Path

import numpy as np

from mensa.model.study import GRAPH_FEATURES, graph_features, network_figures

__all__ = ["CLASS_FEATURES", "FEATURES", "TARGETS", "class_features", "cell_features", "PerfModel"]

#: The class's parameters the model sees.
CLASS_FEATURES = ("pe_rows", "pe_cols", "cores_per_pe", "lanes_per_core", "clock_mhz", "core_mem_kib",
                  "pe_mem_kib", "io_gbps", "dram_gbps")
_NETWORK_FEATURES = ("macs", "params", "layers", "act_bytes")
FEATURES = (*GRAPH_FEATURES, *_NETWORK_FEATURES, *CLASS_FEATURES)
TARGETS = ("latency_ms", "energy_uj")


def class_features(system):
    """The template parameters of a one-accelerator Edge TPU class, in :data:`CLASS_FEATURES` order."""
    acc = system.accelerator[0]
    t = acc.edgetpu
    if t is None:
        raise ValueError(f"{system.name}: not an Edge TPU template (no [accelerator.edgetpu] table)")
    return [t.pe_rows, t.pe_cols, t.cores_per_pe, t.lanes_per_core, acc.clock_mhz, t.core_mem_kib, t.pe_mem_kib,
            t.io_gbps, system.dram.bandwidth_gbps]


def cell_features(cell):
    """A cell's graph and network features, in the order of :data:`FEATURES` before the class's."""
    figs = network_figures(cell)
    return [*graph_features(cell), *(figs[k] for k in _NETWORK_FEATURES)]


class PerfModel:
    """One LightGBM regressor per target on log scale; :meth:`fit`, :meth:`predict`, :meth:`save`, :meth:`load`."""

    def __init__(self, boosters=None):
        self.boosters = boosters or {}

    @staticmethod
    def _params(seed):
        return dict(objective="regression", learning_rate=0.08, num_leaves=63, min_data_in_leaf=20,
                    feature_fraction=0.9, bagging_fraction=0.8, bagging_freq=1, seed=seed, verbose=-1,
                    num_threads=0, deterministic=True)

    def fit(self, x, y, *, rounds=600, seed=0):
        """``x`` (N, len(FEATURES)); ``y`` a dict of :data:`TARGETS` to (N,) positive arrays."""
        import lightgbm as lgb
        x = np.asarray(x, dtype=np.float64)
        for t in TARGETS:
            data = lgb.Dataset(x, np.log(np.asarray(y[t], dtype=np.float64)), feature_name=list(FEATURES),
                               free_raw_data=True)
            self.boosters[t] = lgb.train(self._params(seed), data, num_boost_round=rounds)
        return self

    def predict(self, x):
        """A dict of :data:`TARGETS` to predicted (N,) arrays."""
        x = np.asarray(x, dtype=np.float64).reshape(-1, len(FEATURES))
        return {t: np.exp(b.predict(x)) for t, b in self.boosters.items()}

    def importance(self, target="latency_ms"):
        """Gain of every feature for ``target``, normalised to sum 1."""
        gain = self.boosters[target].feature_importance(importance_type="gain")
        return dict(zip(FEATURES, gain / max(gain.sum(), 1e-300)))

    def save(self, folder):
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for t, b in self.boosters.items():
            b.save_model(str(folder / f"{t}.txt"))
        (folder / "features.json").write_text(json.dumps({"features": FEATURES, "targets": TARGETS}, indent=1) + "\n")

    @classmethod
    def load(cls, folder):
        import lightgbm as lgb
        folder = Path(folder)
        meta = json.loads((folder / "features.json").read_text())
        if tuple(meta["features"]) != FEATURES:
            raise ValueError(f"{folder}: trained on other features; retrain it with `mensa study --report`")
        return cls({t: lgb.Booster(model_file=str(folder / f"{t}.txt")) for t in meta["targets"]})
