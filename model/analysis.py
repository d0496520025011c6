"""Layer characterisation and the Mensa layer families.

Per layer (:func:`characterise`), for one batch-1 inference (one invocation of a recurrent model)
with int8 activations and weights and int32 biases:

``macs``
    multiply-accumulates (:attr:`Layer.macs`).
``param_bytes``
    parameter footprint: one byte per weight, four per bias.
``act_in_bytes``, ``act_out_bytes``
    every input tensor (the extra inputs of ADD / MUL / CONCAT included) and the output, one byte
    per element. An LSTM's recurrent state stays on chip and is not counted.
``intensity``
    arithmetic intensity *with* on-chip reuse: MACs per byte of compulsory DRAM traffic, every
    parameter and activation byte crossing the DRAM interface exactly once
    (``macs / (param_bytes + act_in_bytes + act_out_bytes)``). This is the x axis of a roofline.
``intensity_no_reuse``
    arithmetic intensity *without* on-chip reuse: each MAC fetches its weight byte and its input
    byte from DRAM, each output byte is written once (``macs / (2 * macs + act_out_bytes)``,
    below 0.5). The ratio ``intensity / intensity_no_reuse`` is the reuse that on-chip buffers can
    harvest.
``param_reuse``
    MACs per weight: how often each weight is used in one inference (output pixels of a
    convolution, time steps of an LSTM, 1 for a batch-1 FC).
``recurrent``
    an intra-layer (time-step to time-step) dependency: LSTM layers.

Families (:func:`fit_families`): the layers with MACs of the whole zoo are clustered with k-means
(scikit-learn) on standardised features (log intensity, log parameter footprint, log parameter
reuse, log activation footprint, recurrent flag); families are numbered by rising median
intensity. Layers without MACs (add, pooling, concat, multiply) move data only and are not
clustered (family ``None``). :meth:`Families.assign` places a new model's layers in the nearest
family (the k-means centroid, as ``KMeans.predict``). Deterministic for a given seed.

The zoo's fit is cached as JSON (``$XDG_CACHE_HOME/mensa`` or ``~/.cache/mensa``), keyed by a hash
of the zoo's feature matrix, ``k``, ``seed`` and the scikit-learn version: importing scikit-learn
alone takes seconds, and the cached centroids give the same assignment.
"""

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass
from functools import lru_cache
from importlib.metadata import version
from pathlib import Path

import numpy as np

from mensa.core.errors import UserError
from mensa.core.ir import Op
from mensa.model import zoo

__all__ = ["AnalysisError", "LayerFeatures", "characterise", "zoo_features", "Family", "Families", "fit_families",
           "zoo_families"]


class AnalysisError(UserError):
    """Impossible analysis parameters (e.g. more families than layers)."""


@dataclass(frozen=True)
class LayerFeatures:
    """The characterisation of one layer (see the module docstring for the definitions)."""
    model: str
    layer: str
    op: str
    macs: int
    params: int
    param_bytes: int
    act_in_bytes: int
    act_out_bytes: int
    intensity: float
    intensity_no_reuse: float
    param_reuse: float
    recurrent: bool

    @property
    def traffic_bytes(self):
        """Compulsory DRAM traffic (each byte once)."""
        return self.param_bytes + self.act_in_bytes + self.act_out_bytes

    def as_dict(self):
        return asdict(self)


def _bias_count(layer):
    if not layer.bias or not layer.params:
        return 0
    return 4 * layer.hidden if layer.op is Op.LSTM else layer.out_channels


def characterise(net):
    """:class:`LayerFeatures` of every layer of ``net``, in layer order."""
    out = []
    for layer in net.layers:
        biases = _bias_count(layer)
        weights = layer.params - biases
        param_bytes = weights + 4 * biases
        act_in = math.prod(layer.in_shape) + sum(math.prod(s) for s in layer.extra_in_shapes)
        act_out = math.prod(layer.out_shape)
        macs = layer.macs
        out.append(LayerFeatures(
            model=net.name, layer=layer.name, op=layer.op.value, macs=macs, params=layer.params,
            param_bytes=param_bytes, act_in_bytes=act_in, act_out_bytes=act_out,
            intensity=macs / (param_bytes + act_in + act_out),
            intensity_no_reuse=macs / (2 * macs + act_out),
            param_reuse=macs / weights if weights else 0.0,
            recurrent=layer.op is Op.LSTM))
    return out


def zoo_features():
    """Features of every layer of every zoo model (registry order)."""
    return [f for name in zoo.names() for f in characterise(zoo.get(name))]


FEATURE_NAMES = ("log10 intensity", "log10 param bytes", "log10 param reuse", "log10 activation bytes",
                 "recurrent")


def _matrix(features):
    return np.array([[math.log10(f.intensity), math.log10(max(f.param_bytes, 1)),
                      math.log10(max(f.param_reuse, 1.0)), math.log10(f.act_in_bytes + f.act_out_bytes),
                      float(f.recurrent)] for f in features])


@dataclass(frozen=True)
class Family:
    """A family of layers: its number, a descriptive label, medians of its features and its members."""
    index: int
    label: str
    count: int
    intensity: float            # median MAC per DRAM byte (with reuse)
    param_bytes: float          # median parameter footprint
    param_reuse: float          # median MACs per weight
    act_bytes: float            # median activation bytes in + out
    recurrent: float            # fraction of recurrent members
    ops: dict                   # op -> member count
    models: dict                # model -> member count
    members: tuple              # (model, layer) pairs

    def summary(self):
        d = asdict(self)
        d.pop("members")
        return d


def _label(intensity, param_bytes, param_reuse, act_bytes, recurrent, ops):
    top = max(ops, key=ops.get)
    if recurrent >= 0.5:
        kind = "recurrent"
    elif param_reuse < 8:
        kind = "low parameter reuse"
    elif intensity >= 40:
        kind = "compute-centric"
    elif act_bytes >= 4 * param_bytes:
        kind = "activation-bound"
    else:
        kind = "low intensity"
    return f"{kind}, mostly {top}"


class Families:
    """Layer families; :meth:`assign` classifies new layers by the nearest centroid.

    Parameters
    ----------
    mean, scale : array of float
        The feature standardisation (``(x - mean) / scale``).
    centers : array of float, (k, features)
        Family centroids in standardised space, row ``i`` for family ``i``.
    families : tuple of :class:`Family`
    """

    def __init__(self, *, mean, scale, centers, families):
        self._mean = np.asarray(mean, dtype=float)
        self._scale = np.asarray(scale, dtype=float)
        self._centers = np.asarray(centers, dtype=float)
        self.families = tuple(families)

    def __len__(self):
        return len(self.families)

    def __iter__(self):
        return iter(self.families)

    def __getitem__(self, index):
        return self.families[index]

    def assign(self, features):
        """The family index of each layer in ``features`` (``None`` for layers without MACs)."""
        compute = [f for f in features if f.macs > 0]
        labels = iter(())
        if compute:
            x = (_matrix(compute) - self._mean) / self._scale
            labels = iter(np.argmin(((x[:, None, :] - self._centers[None]) ** 2).sum(-1), axis=1))
        return [int(next(labels)) if f.macs > 0 else None for f in features]

    def intensity_spread(self):
        """Ratio of the highest to the lowest family median intensity."""
        vals = [f.intensity for f in self.families]
        return max(vals) / min(vals)

    def to_json(self):
        return {"mean": self._mean.tolist(), "scale": self._scale.tolist(), "centers": self._centers.tolist(),
                "families": [asdict(f) for f in self.families]}

    @classmethod
    def from_json(cls, data):
        fams = [Family(**{**f, "members": tuple(tuple(m) for m in f["members"])}) for f in data["families"]]
        return cls(mean=data["mean"], scale=data["scale"], centers=data["centers"], families=fams)


def fit_families(features, *, k=5, seed=0):
    """Cluster the layers with MACs of ``features`` into ``k`` families (k-means, ``seed``)."""
    from sklearn.cluster import KMeans
    from sklearn.preprocessing import StandardScaler

    if not isinstance(k, int) or k < 2:
        raise AnalysisError(f"families: {k!r}; at least 2 are needed")
    compute = [f for f in features if f.macs > 0]
    if len(compute) < k:
        raise AnalysisError(f"{len(compute)} layers with MACs cannot form {k} families")
    from threadpoolctl import threadpool_limits

    scaler = StandardScaler().fit(_matrix(compute))
    # One thread: with 800 points, a thread pool on a shared machine costs more than it gives.
    with threadpool_limits(1):
        kmeans = KMeans(n_clusters=k, random_state=seed, n_init=10).fit(scaler.transform(_matrix(compute)))
    groups = {c: [f for f, l in zip(compute, kmeans.labels_) if l == c] for c in range(k)}
    median = {c: float(np.median([f.intensity for f in g])) for c, g in groups.items()}
    order = {c: i for i, c in enumerate(sorted(groups, key=lambda c: median[c]))}
    families = []
    for c in sorted(groups, key=order.get):
        g = groups[c]
        ops, models = {}, {}
        for f in g:
            ops[f.op] = ops.get(f.op, 0) + 1
            models[f.model] = models.get(f.model, 0) + 1
        pb = float(np.median([f.param_bytes for f in g]))
        rec = sum(f.recurrent for f in g) / len(g)
        reuse = float(np.median([f.param_reuse for f in g]))
        act = float(np.median([f.act_in_bytes + f.act_out_bytes for f in g]))
        families.append(Family(
            index=order[c], label=_label(median[c], pb, reuse, act, rec, ops), count=len(g), intensity=median[c],
            param_bytes=pb, param_reuse=reuse, act_bytes=act, recurrent=rec,
            ops=dict(sorted(ops.items(), key=lambda kv: -kv[1])),
            models=dict(sorted(models.items(), key=lambda kv: -kv[1])),
            members=tuple((f.model, f.layer) for f in g)))
    centers = [kmeans.cluster_centers_[c] for c in sorted(groups, key=order.get)]
    return Families(mean=scaler.mean_, scale=scaler.scale_, centers=centers, families=families)


_CACHE_FORMAT = 3     # bump when Family or the labels change


def _cache_dir():
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mensa"


@lru_cache(maxsize=4)
def zoo_families(k=5, seed=0):
    """Families fitted on the whole zoo: ``(features, families)``; cached on disk (see above)."""
    features = tuple(zoo_features())
    compute = [f for f in features if f.macs > 0]
    key = hashlib.sha256(_matrix(compute).tobytes())
    key.update(repr([(f.model, f.layer) for f in compute]).encode())
    key.update(f"{_CACHE_FORMAT}/{k}/{seed}/{version('scikit-learn')}".encode())
    path = _cache_dir() / f"families-{key.hexdigest()[:16]}.json"
    try:
        return features, Families.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    families = fit_families(features, k=k, seed=seed)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(families.to_json()))
        tmp.replace(path)
    except OSError:
        pass    # a read-only home only costs the next run a refit
    return features, families
