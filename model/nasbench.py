"""NAS-Bench-101 (Ying et al. 2019): its cell space, enumerated here, and the network of every cell.

A *cell* is a DAG of at most 7 vertices and 9 edges, given as an upper-triangular
adjacency matrix (vertex 0 the cell's input, the last vertex its output) and an op
per interior vertex: ``conv3x3-bn-relu``, ``conv1x1-bn-relu`` or ``maxpool3x3``.
Every vertex lies on a path from the input to the output. Two cells are the same
network when the published graph hash (:func:`cell_hash`: iterated MD5 of in-degree,
out-degree and label, as nasbench's ``graph_util.hash_module``) says so; the published
space holds :data:`PUBLISHED_COUNT` of them.

:func:`enumerate_cells` finds them without a dataset download and without hashing
every labelled matrix: it groups the matrices into isomorphism classes by a canonical
code over the permutations of the interior vertices, takes each class's labelings up
to its automorphisms, and only then hashes one representative of each; the hash is
invariant under isomorphism, so the distinct hashes are those of the published
generator (which hashes every labelled matrix).

:func:`build_network` is the published network of a cell (``model_builder.py``):
a 3x3 stem of 128 channels, three stacks of three cells, 2x2 max pooling and
channel doubling between stacks, the inputs of a vertex summed (a vertex with one
channel more than its consumer is truncated), the output the concatenation of its
predecessors plus a 1x1 projection of the input when they are joined, 1x1
projections on the edges out of the cell input, global average pooling and a
10-way classifier on 32x32x3 (CIFAR-10) inputs. Batch norm is folded into the convs.
"""

import hashlib
import itertools
import math
from collections import namedtuple
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mensa.core.builder import NetworkBuilder
from mensa.core.errors import UserError
from mensa.core.ir import Activation

__all__ = ["OPS", "MAX_VERTICES", "MAX_EDGES", "PUBLISHED_COUNT", "CellError", "Cell", "cell_hash",
           "CellSpace", "enumerate_cells", "build_network", "add_cell", "CellShapes"]

OPS = ("conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3")
INPUT, OUTPUT = "input", "output"
MAX_VERTICES = 7
MAX_EDGES = 9
PUBLISHED_COUNT = 423_624      # unique cells of the published space (Ying et al. 2019)


class CellError(UserError):
    """A malformed cell: one line naming what is wrong and what is allowed."""


def cell_hash(matrix, labels):
    """The published isomorphism-invariant hash of a cell (nasbench ``graph_util.hash_module``).

    Parameters
    ----------
    matrix : (V, V) array of 0/1, upper triangular
    labels : sequence of V ints: -1 for the input, -2 for the output, else the index in :data:`OPS`
    """
    matrix = np.asarray(matrix)
    v = matrix.shape[0]
    ins = matrix.sum(axis=0).tolist()
    outs = matrix.sum(axis=1).tolist()
    preds = [[w for w in range(v) if matrix[w, u]] for u in range(v)]
    succs = [[w for w in range(v) if matrix[u, w]] for u in range(v)]
    md5 = hashlib.md5
    hashes = [md5(str(h).encode("utf-8")).hexdigest() for h in zip(outs, ins, labels)]
    for _ in range(v):
        hashes = [md5(("".join(sorted(hashes[w] for w in preds[u])) + "|" +
                       "".join(sorted(hashes[w] for w in succs[u])) + "|" + hashes[u]).encode("utf-8")).hexdigest()
                  for u in range(v)]
    return md5(str(sorted(hashes)).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Cell:
    """One cell: ``matrix`` (V x V, upper triangular, 0/1) and ``ops`` (V names, ``input`` first,
    ``output`` last). Build one with :meth:`Cell.parse` to have it checked and pruned."""
    matrix: tuple[tuple[int, ...], ...]
    ops: tuple[str, ...]

    @property
    def vertices(self):
        return len(self.ops)

    @property
    def edges(self):
        return sum(map(sum, self.matrix))

    @property
    def labels(self):
        return [-1] + [OPS.index(op) for op in self.ops[1:-1]] + [-2]

    @property
    def hash(self):
        return cell_hash(np.array(self.matrix, dtype=np.int64), self.labels)

    @classmethod
    def parse(cls, matrix, ops):
        """A checked cell from a user's adjacency matrix and op names.

        Vertices on no input-to-output path are pruned, as nasbench's ``ModelSpec`` does;
        a cycle, a matrix that is not upper triangular (vertices not in topological
        order), more than :data:`MAX_VERTICES` vertices or :data:`MAX_EDGES` edges, an
        unknown op, or an input that reaches no output raise :class:`CellError`.
        """
        try:
            m = np.array(matrix, dtype=np.int64)
        except (TypeError, ValueError, OverflowError):
            raise CellError("matrix: not a square matrix of 0 and 1; allowed: e.g. [[0,1,1],[0,0,1],[0,0,0]]") from None
        ops = list(ops)
        if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] < 2:
            raise CellError(f"matrix: shape {m.shape} is not square of at least 2 vertices; allowed: V x V, "
                            f"2 <= V <= {MAX_VERTICES}")
        v = m.shape[0]
        if not np.isin(m, (0, 1)).all():
            raise CellError("matrix: entries other than 0 and 1; allowed: 0 (no edge) and 1 (an edge)")
        if len(ops) != v:
            raise CellError(f"ops: {len(ops)} ops for {v} vertices; allowed: one per vertex, 'input' first and "
                            f"'output' last")
        if ops[0] != INPUT or ops[-1] != OUTPUT:
            raise CellError(f"ops: {ops[0]!r} ... {ops[-1]!r}; allowed: 'input' first and 'output' last")
        for i, op in enumerate(ops[1:-1], 1):
            if op not in OPS:
                raise CellError(f"ops[{i}]: unknown op {op!r}; allowed: {', '.join(OPS)}")
        if np.tril(m).any():
            if _has_cycle(m):
                raise CellError("matrix: the graph has a cycle; allowed: a DAG")
            raise CellError("matrix: edges on or below the diagonal; allowed: an upper-triangular matrix "
                            "(vertices in topological order)")
        if v > MAX_VERTICES:
            raise CellError(f"matrix: {v} vertices; allowed: at most {MAX_VERTICES} (input and output included)")
        # prune vertices no input-to-output path passes through
        keep = _reach(m, 0) & _reach(m.T, v - 1)
        if not keep[v - 1]:
            raise CellError("matrix: no path from the input (vertex 0) to the output (the last vertex)")
        m = m[np.ix_(keep, keep)]
        ops = [op for op, k in zip(ops, keep) if k]
        if m.sum() > MAX_EDGES:
            raise CellError(f"matrix: {int(m.sum())} edges; allowed: at most {MAX_EDGES}")
        return cls(tuple(tuple(int(x) for x in row) for row in m), tuple(ops))

    def vertex_channels(self, in_channels, out_channels):
        """Channels of every vertex (nasbench ``compute_vertex_channels``): the output's split
        evenly among the vertices feeding it (the first ones get the remainder), every other
        interior vertex the largest of its successors'."""
        m, v = self.matrix, self.vertices
        ch = [0] * v
        ch[0], ch[-1] = in_channels, out_channels
        if v == 2:
            return ch
        fan_in = sum(m[u][v - 1] for u in range(1, v - 1))
        each, extra = divmod(out_channels, fan_in)
        for u in range(1, v - 1):
            if m[u][v - 1]:
                ch[u] = each + (1 if extra else 0)
                extra -= 1 if extra else 0
        for u in range(v - 3, 0, -1):
            if not m[u][v - 1]:
                ch[u] = max(ch[d] for d in range(u + 1, v - 1) if m[u][d])
        return ch


def _reach(m, start):
    seen = np.zeros(m.shape[0], dtype=bool)
    stack = [start]
    while stack:
        u = stack.pop()
        if not seen[u]:
            seen[u] = True
            stack.extend(int(w) for w in np.flatnonzero(m[u]))
    return seen


def _has_cycle(m):
    indeg = m.sum(axis=0).astype(int)
    ready = [u for u in range(m.shape[0]) if indeg[u] == 0]
    done = 0
    while ready:
        u = ready.pop()
        done += 1
        for w in np.flatnonzero(m[u]):
            indeg[w] -= 1
            if indeg[w] == 0:
                ready.append(int(w))
    return done < m.shape[0]


@dataclass(frozen=True, eq=False)
class CellSpace:
    """Enumerated cells as arrays: ``vertices`` (N,), ``matrices`` (N, 7, 7) with a cell of V
    vertices in the top-left V x V (its output is vertex V - 1), ``ops`` (N, 5) interior op
    indices (-1 past V - 2), ``hashes`` (N,) the published hashes."""
    vertices: np.ndarray
    matrices: np.ndarray
    ops: np.ndarray
    hashes: np.ndarray

    def __len__(self):
        return len(self.vertices)

    def cell(self, i):
        v = int(self.vertices[i])
        m = self.matrices[i, :v, :v]
        ops = (INPUT, *(OPS[k] for k in self.ops[i, :v - 2]), OUTPUT)
        return Cell(tuple(tuple(int(x) for x in row) for row in m), ops)

    def save(self, path):
        np.savez_compressed(path, vertices=self.vertices, matrices=self.matrices, ops=self.ops,
                            hashes=self.hashes.astype("S32"))

    @classmethod
    def load(cls, path):
        with np.load(path) as f:
            return cls(f["vertices"], f["matrices"], f["ops"], f["hashes"].astype("U32"))


def _upper_pairs(v):
    """(row, col) of the upper triangle in the published bit order: bit ``x + y (y - 1) / 2`` is edge x -> y."""
    return [(x, y) for y in range(v) for x in range(y)]


def _full_dags(v, max_edges):
    """Every upper-triangular 0/1 matrix of ``v`` vertices with at most ``max_edges`` edges and every
    vertex on an input-to-output path, as (M, v, v) uint8, in the published generator's order."""
    pairs = _upper_pairs(v)
    bits = np.arange(1 << len(pairs), dtype=np.int64)
    edge = ((bits[:, None] >> np.arange(len(pairs))) & 1).astype(np.uint8)
    edge = edge[edge.sum(axis=1) <= max_edges]
    m = np.zeros((len(edge), v, v), dtype=np.uint8)
    rows, cols = zip(*pairs) if pairs else ((), ())
    m[:, rows, cols] = edge
    full = m[:, :v - 1, :].any(axis=2).all(axis=1) & m[:, :, 1:].any(axis=1).all(axis=1)
    return m[full]


def _codes(m, perms):
    """Code of every matrix under every vertex permutation: (M, P) int64 (bit i * v + j: edge i -> j)."""
    v = m.shape[1]
    weights = (1 << np.arange(v * v, dtype=np.int64)).reshape(v, v)
    out = np.empty((len(m), len(perms)), dtype=np.int64)
    for k, p in enumerate(perms):
        out[:, k] = (m[:, p][:, :, p].astype(np.int64) * weights).sum(axis=(1, 2))
    return out


def _hash_all(candidates):
    """The published hash of each ``(matrix, labels)``."""
    return [cell_hash(m, [-1, *labels, -2]) for m, labels in candidates]


def enumerate_cells(max_vertices=MAX_VERTICES, max_edges=MAX_EDGES, *, progress=None, map_chunks=None):
    """Every unique cell of at most ``max_vertices`` vertices and ``max_edges`` edges.

    ``progress(vertices, found)`` is called after each vertex count. ``map_chunks(fn, chunks)``,
    when given, returns ``[fn(chunk) for chunk in chunks]`` in order, in parallel as it likes
    (the hashing is most of the time). Returns a :class:`CellSpace` in the published
    generator's order of first appearance (by vertex count, then matrix bits, then labeling).
    """
    map_chunks = map_chunks or (lambda fn, chunks: [fn(c) for c in chunks])
    verts, mats, opss, hashes = [], [], [], []
    seen = set()
    for v in range(2, max_vertices + 1):
        m = _full_dags(v, max_edges)
        k = v - 2
        perms = [np.array((0, *p, v - 1)) for p in itertools.permutations(range(1, v - 1))]
        codes = _codes(m, perms)                  # perms[0] is the identity
        canon = codes.min(axis=1)
        _, first = np.unique(canon, return_index=True)
        labelings = np.array(list(itertools.product(range(len(OPS)), repeat=k)), dtype=np.int64)
        labelings = labelings.reshape(len(OPS) ** k, k)
        place = len(OPS) ** np.arange(k - 1, -1, -1, dtype=np.int64)
        candidates = []                           # one (matrix, labels) per labelled isomorphism class
        for i in np.sort(first):
            autos = [p[1:-1] - 1 for p, c in zip(perms, codes[i]) if c == codes[i, 0]]
            # a labeling's orbit under the automorphisms: its smallest code names it
            orbit = np.min([labelings[:, a] @ place for a in autos], axis=0)
            candidates += [(m[i], [(int(code) // int(p)) % len(OPS) for p in place]) for code in np.unique(orbit)]
        step = 8192
        found = map_chunks(_hash_all, [candidates[j:j + step] for j in range(0, len(candidates), step)])
        for (matrix, labels), h in zip(candidates, itertools.chain.from_iterable(found)):
            if h in seen:
                continue
            seen.add(h)
            padded = np.zeros((MAX_VERTICES, MAX_VERTICES), dtype=np.uint8)
            padded[:v, :v] = matrix
            verts.append(v)
            mats.append(padded)
            opss.append(labels + [-1] * (MAX_VERTICES - 2 - k))
            hashes.append(h)
        if progress is not None:
            progress(v, len(hashes))
    return CellSpace(np.array(verts, dtype=np.int8),
                     np.array(mats, dtype=np.uint8).reshape(-1, MAX_VERTICES, MAX_VERTICES),
                     np.array(opss, dtype=np.int8).reshape(-1, MAX_VERTICES - 2), np.array(hashes, dtype="U32"))


def load_or_enumerate(path, *, progress=None, map_chunks=None):
    """The full space, cached in ``path`` (``.npz``): enumerated once, read back after."""
    path = Path(path)
    if path.exists():
        try:
            space = CellSpace.load(path)
        except (OSError, ValueError, KeyError) as e:
            raise CellError(f"{path}: not a cell space mensa wrote ({e}); allowed: delete it to enumerate again") from None
        if len(space) != PUBLISHED_COUNT:
            raise CellError(f"{path}: {len(space):,} cells, not the {PUBLISHED_COUNT:,} of the space; allowed: "
                            f"delete it to enumerate again")
        return space
    space = enumerate_cells(progress=progress, map_chunks=map_chunks)
    tmp = path.with_name(path.name + ".part.npz")
    space.save(tmp)
    tmp.replace(path)
    return space


# -- the network ---------------------------------------------------------------------------

STEM_CHANNELS = 128
STACKS = 3
CELLS_PER_STACK = 3
INPUT_SIZE = 32
CLASSES = 10


def add_cell(b, x, cell, channels, prefix):
    """Append one cell to builder ``b`` (a :class:`~mensa.core.builder.NetworkBuilder`, or
    :class:`CellShapes`) on input ``x``; returns the cell's output."""
    m, v = cell.matrix, cell.vertices
    ch = cell.vertex_channels(x.shape[-1], channels)
    relu = Activation.RELU
    tensors, concat_in = [x], []
    for t in range(1, v - 1):
        add_in = [b.truncate(tensors[s], ch[t]) for s in range(1, t) if m[s][t]]
        if m[0][t]:
            add_in.append(b.conv(x, ch[t], 1, activation=relu, name=f"{prefix}proj{t}"))
        y = add_in[0]
        for j, z in enumerate(add_in[1:]):
            y = b.add(y, z, name=f"{prefix}sum{t}_{j}")
        op = cell.ops[t]
        if op == "maxpool3x3":
            y = b.maxpool(y, 3, stride=1, padding="same", name=f"{prefix}v{t}")
        else:
            y = b.conv(y, ch[t], 3 if op == "conv3x3-bn-relu" else 1, activation=relu, name=f"{prefix}v{t}")
        tensors.append(y)
        if m[t][v - 1]:
            concat_in.append(y)
    if not concat_in:
        return b.conv(x, channels, 1, activation=relu, name=f"{prefix}proj_out")
    out = concat_in[0] if len(concat_in) == 1 else b.concat(*concat_in, name=f"{prefix}concat")
    if m[0][v - 1]:
        out = b.add(out, b.conv(x, channels, 1, activation=relu, name=f"{prefix}proj_out"), name=f"{prefix}out")
    return out


def _network(b, cell, add=add_cell):
    x = b.conv(b.input, STEM_CHANNELS, 3, activation=Activation.RELU, name="stem")
    for s in range(STACKS):
        channels = x.shape[-1]
        if s:
            x = b.maxpool(x, 2, stride=2, padding="same", name=f"s{s}_down")
            channels *= 2
        for c in range(CELLS_PER_STACK):
            x = add(b, x, cell, channels, f"s{s}c{c}_")
    x = b.global_avgpool(x, name="gap")
    b.fc(b.flatten(x), CLASSES, name="fc")


def build_network(cell, *, name=None):
    """The published NAS-Bench-101 network of ``cell`` as a :class:`~mensa.core.ir.Network`."""
    b = NetworkBuilder(name or f"nasbench101_{cell.hash[:12]}", (1, INPUT_SIZE, INPUT_SIZE, 3))
    _network(b, cell)
    return b.build()


_Shape = namedtuple("_Shape", "name shape")


class CellShapes:
    """Stands in for :class:`~mensa.core.builder.NetworkBuilder` in :func:`add_cell` and the network
    skeleton, recording every layer as a hashable key instead of building it: the study walks
    423,624 networks this way, and :meth:`layer` builds a key's real layer once.

    The keys hold everything a layer's cost depends on: the builder call and its input shapes.
    """

    def __init__(self):
        self.keys = []
        self.input = _Shape("input", (1, INPUT_SIZE, INPUT_SIZE, 3))

    def _out(self, key, shape):
        self.keys.append(key)
        return _Shape("", shape)

    def conv(self, x, out_channels, kernel, *, activation, name=None, stride=1, padding="same"):
        n, h, w, _ = x.shape
        oh, ow = -(-h // stride), -(-w // stride)
        return self._out(("conv", x.shape, out_channels, kernel, stride), (n, oh, ow, out_channels))

    def maxpool(self, x, kernel, *, stride, padding, name=None):
        n, h, w, c = x.shape
        return self._out(("maxpool", x.shape, kernel, stride), (n, -(-h // stride), -(-w // stride), c))

    def add(self, x, y, *, name=None):
        return self._out(("add", x.shape), x.shape)

    def concat(self, *xs, name=None):
        return self._out(("concat", tuple(x.shape for x in xs)), xs[0].shape[:-1] + (sum(x.shape[-1] for x in xs),))

    def truncate(self, x, channels):
        return _Shape(x.name, x.shape[:-1] + (channels,))

    def global_avgpool(self, x, *, name=None):
        return self._out(("gap", x.shape), (x.shape[0], 1, 1, x.shape[-1]))

    def flatten(self, x):
        return _Shape(x.name, (x.shape[0], math.prod(x.shape[1:])))

    def fc(self, x, out_features, *, name=None):
        return self._out(("fc", x.shape, out_features), (x.shape[0], out_features))

    @staticmethod
    def layer(key, name):
        """The :class:`~mensa.core.ir.Layer` a key stands for, built by the real builder."""
        kind, shape = key[0], key[1]
        relu = Activation.RELU
        if kind == "concat":
            b = NetworkBuilder(name, shape[0])
            xs = [b.input] + [b.add_input(f"x{i}", s) for i, s in enumerate(shape[1:], 1)]
            b.concat(*xs, name=name)
            return b.build().layers[0]
        b = NetworkBuilder(name, shape)
        x = b.input
        if kind == "conv":
            b.conv(x, key[2], key[3], stride=key[4], activation=relu, name=name)
        elif kind == "maxpool":
            b.maxpool(x, key[2], stride=key[3], padding="same", name=name)
        elif kind == "add":
            b.add(x, b.add_input("y", shape), name=name)
        elif kind == "gap":
            b.global_avgpool(x, name=name)
        else:
            b.fc(x, key[2], name=name)
        return b.build().layers[0]

    @classmethod
    def network_keys(cls, cell):
        """The keys of every layer of ``cell``'s network, in layer order."""
        rec, memo = cls(), {}

        def add(b, x, cell, channels, prefix):     # the cells of a stack after its first repeat it
            seen = memo.get((x.shape, channels))
            if seen is None:
                start = len(rec.keys)
                y = add_cell(b, x, cell, channels, prefix)
                memo[x.shape, channels] = seen = (rec.keys[start:], y)
            else:
                rec.keys.extend(seen[0])
            return seen[1]
        _network(rec, cell, add)
        return rec.keys
