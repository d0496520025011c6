"""NAS-Bench-101 as mensa enumerates and builds it: the count, the hash, the cells, the networks."""

import itertools

import numpy as np
import pytest

from mensa.core import golden
from mensa.core.ir import Op
from mensa.core.quant import quantize_network, random_float_params, run_float
from mensa.model.nasbench import (MAX_EDGES, OPS, PUBLISHED_COUNT, Cell, CellError, CellShapes, build_network,
                                  cell_hash, enumerate_cells)
from tests.golden.test_onnx_oracle import ort_conv_integer


def _published_generator(max_vertices, max_edges=MAX_EDGES):
    """nasbench's generate_graphs.py, written out plainly: every upper-triangular matrix by its bits,
    every labeling, one entry per distinct hash. Returns {hash: (matrix, labels)}."""
    found = {}
    for v in range(2, max_vertices + 1):
        pairs = [(x, y) for y in range(v) for x in range(y)]
        for bits in range(1 << len(pairs)):
            m = np.zeros((v, v), dtype=np.int64)
            for k, (x, y) in enumerate(pairs):
                m[x, y] = (bits >> k) & 1
            if m.sum() > max_edges or m[:v - 1].sum(axis=1).min() == 0 or m[:, 1:].sum(axis=0).min() == 0:
                continue
            for labels in itertools.product(range(len(OPS)), repeat=v - 2):
                lab = [-1, *labels, -2]
                found.setdefault(cell_hash(m, lab), (m, lab))
    return found


def _isomorphism_classes(graphs):
    """Distinct graphs up to isomorphism, by brute force over every permutation of the interior vertices."""
    canon = set()
    for m, lab in graphs:
        v = len(m)
        best = None
        for p in itertools.permutations(range(1, v - 1)):
            p = (0, *p, v - 1)
            key = (tuple(m[np.ix_(p, p)].ravel()), tuple(lab[i] for i in p))
            best = key if best is None or key < best else best
        canon.add((v, best))
    return canon


@pytest.mark.parametrize("vertices", [2, 3, 4, 5])
def test_the_enumeration_matches_the_published_generator_and_brute_force_isomorphism(vertices):
    space = enumerate_cells(vertices)
    published = _published_generator(vertices)
    assert len(space) == len(published)
    assert set(space.hashes) == set(published)
    # the published hash merges no two graphs that are not isomorphic (at these sizes)
    assert len(_isomorphism_classes(published.values())) == len(space)


def test_small_counts_and_a_known_cell():
    counts = [len(enumerate_cells(v)) for v in (2, 3, 4, 5)]
    assert counts == [1, 7, 91, 2532]
    # the ResNet-like cell of the NAS-Bench-101 paper's figure: input -> conv3x3 -> conv3x3 -> output, + input
    cell = Cell.parse([[0, 1, 0, 1], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]],
                      ["input", "conv3x3-bn-relu", "conv3x3-bn-relu", "output"])
    assert cell.hash in set(enumerate_cells(4).hashes)


@pytest.mark.slow
def test_the_full_space_has_the_published_count():
    space = enumerate_cells()
    assert len(space) == PUBLISHED_COUNT
    assert len(set(space.hashes)) == PUBLISHED_COUNT
    for i in np.random.default_rng(0).choice(len(space), 200, replace=False):
        cell = space.cell(int(i))
        assert cell.hash == space.hashes[i]
        assert Cell.parse(cell.matrix, cell.ops) == cell and cell.edges <= MAX_EDGES


def test_every_enumerated_cell_is_a_full_dag_with_its_own_hash():
    space = enumerate_cells(5)
    for i in range(0, len(space), 7):
        cell = space.cell(i)
        assert Cell.parse(cell.matrix, cell.ops) == cell        # nothing to prune, nothing refused
        assert cell.hash == space.hashes[i]


def test_the_hash_does_not_depend_on_the_vertex_order():
    m = np.array([[0, 1, 1, 0], [0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0]])
    assert cell_hash(m, [-1, 0, 2, -2]) == cell_hash(m, [-1, 2, 0, -2])
    assert cell_hash(m, [-1, 0, 2, -2]) != cell_hash(m, [-1, 0, 0, -2])


def test_vertex_channels_split_the_output_and_take_the_largest_successor():
    # input -> 1 -> 2, 3, 4 -> output: the output's 128 channels split 43, 43, 42; vertex 1 feeds them
    m = [[0, 1, 0, 0, 0, 0], [0, 0, 1, 1, 1, 0], [0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 1],
         [0] * 6]
    cell = Cell.parse(m, ["input", "conv1x1-bn-relu", "conv3x3-bn-relu", "maxpool3x3", "conv3x3-bn-relu", "output"])
    assert cell.vertex_channels(64, 128) == [64, 43, 43, 43, 42, 128]


@pytest.mark.parametrize("matrix, ops, message", [
    ([[0, 1], [1, 0]], ["input", "output"], "cycle"),
    ([[0, 0, 1], [1, 0, 0], [0, 0, 0]], ["input", "conv3x3-bn-relu", "output"], "upper-triangular"),
    ([[0] * 8 for _ in range(8)], ["input"] + ["conv1x1-bn-relu"] * 6 + ["output"], "at most 7"),
    ([[int(y == x + 1 or (y == 6 and x < 4)) for y in range(7)] for x in range(7)],
     ["input"] + ["conv1x1-bn-relu"] * 5 + ["output"], "10 edges"),
    ([[0, 1, 0], [0, 0, 1], [0, 0, 0]], ["input", "conv5x5", "output"], "unknown op"),
    ([[0, 1, 0], [0, 0, 0], [0, 0, 0]], ["input", "conv3x3-bn-relu", "output"], "no path"),
    ([[0, 1], [0, 0]], ["input", "conv3x3-bn-relu", "output"], "3 ops for 2"),
    ([[0, 2], [0, 0]], ["input", "output"], "0 and 1"),
    ([[0, 1], [0]], ["input", "output"], "square"),
])
def test_a_malformed_cell_is_refused_in_one_line(matrix, ops, message):
    with pytest.raises(CellError, match=message) as e:
        Cell.parse(matrix, ops)
    assert "\n" not in str(e.value)


def test_a_vertex_on_no_path_is_pruned_as_nasbench_does():
    m = [[0, 1, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0], [0, 0, 0, 0]]      # vertex 2 reaches no output
    cell = Cell.parse(m, ["input", "conv3x3-bn-relu", "maxpool3x3", "output"])
    assert cell.ops == ("input", "conv3x3-bn-relu", "output") and cell.edges == 2


def _layer_fields(layer):
    return (layer.op, layer.in_shape, layer.out_shape, layer.kernel, layer.stride, layer.padding, layer.activation,
            layer.extra_in_shapes, layer.groups)


SEVEN = Cell.parse([[0, 1, 1, 0, 0, 0, 0], [0, 0, 0, 1, 1, 0, 0], [0, 0, 0, 1, 0, 1, 0], [0, 0, 0, 0, 0, 0, 1],
                    [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 1], [0] * 7],
                   ["input", "conv3x3-bn-relu", "maxpool3x3", "conv1x1-bn-relu", "conv3x3-bn-relu", "maxpool3x3",
                    "output"])


def test_the_studys_layer_keys_are_the_networks_layers():
    space = enumerate_cells(5)
    for i in [*np.random.default_rng(3).choice(len(space), 12, replace=False), None]:
        cell = SEVEN if i is None else space.cell(int(i))
        net = build_network(cell)
        keys = CellShapes.network_keys(cell)
        assert sorted(map(repr, (_layer_fields(CellShapes.layer(k, "x")) for k in keys))) == \
            sorted(map(repr, (_layer_fields(l) for l in net.layers)))


def test_the_network_skeleton_is_the_published_one():
    cell = Cell.parse([[0, 1, 0, 1], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]],
                      ["input", "conv3x3-bn-relu", "conv3x3-bn-relu", "output"])
    net = build_network(cell)
    assert net.input_shape == (1, 32, 32, 3)
    assert net["stem"].out_shape == (1, 32, 32, 128)
    assert net["s1_down"].out_shape == (1, 16, 16, 128) and net["s2_down"].out_shape == (1, 8, 8, 256)
    assert net["s2c2_out"].out_shape == (1, 8, 8, 512)
    assert net["fc"].out_shape == (1, 10)
    # 3x3 convs of the stacks: 2 per cell, 9 cells; projections of the input to the output: 1 per cell
    assert sum(l.kernel == (3, 3) and l.name != "stem" for l in net.layers) == 18
    assert sum(l.name.endswith("proj_out") for l in net.layers) == 9


@pytest.mark.parametrize("matrix, ops", [
    # output fan-in 3 (43, 43, 42 channels): vertex 1 (43) truncated into the max pool of vertex 3 (42),
    # a three-way concat, and the input's projection added to it
    ([[0, 1, 0, 0, 1], [0, 0, 1, 1, 1], [0, 0, 0, 0, 1], [0, 0, 0, 0, 1], [0, 0, 0, 0, 0]],
     ["input", "conv1x1-bn-relu", "conv3x3-bn-relu", "maxpool3x3", "output"]),
    ([[0, 1], [0, 0]], ["input", "output"]),
])
def test_networks_run_through_the_golden_model(matrix, ops):
    cell = Cell.parse(matrix, ops)
    net = build_network(cell)
    if cell.vertices > 2:
        pool = net["s0c0_v3"]
        assert pool.in_channels == 42 and net[pool.inputs[0]].out_channels == 43     # a channel slice
    rng = np.random.default_rng(0)
    weights = random_float_params(net, rng)
    x = rng.normal(size=net.input_shape)
    qnet, params = quantize_network(net, weights, [x, rng.normal(size=net.input_shape)])
    xq = np.clip(np.round(x / qnet.input_quant.scale) + qnet.input_quant.zero_point, -128, 127).astype(np.int8)
    out = golden.run_network(qnet, params, xq)
    ref = run_float(net, weights, x)
    for name in ("stem", "fc"):
        q = qnet[name].quant.output
        got = (out[name].astype(np.float64) - q.zero_point) * q.scale
        assert np.corrcoef(got.ravel(), ref[name].ravel())[0, 1] > 0.9, name
    assert golden.run_network(qnet, params, xq)["fc"].tolist() == out["fc"].tolist()
    # the first cell's convs, on the inputs the network gave them (channel slices included), are
    # onnxruntime's ConvInteger bit for bit
    values, checked = {"input": xq, **out}, 0
    for layer in qnet.layers:
        if layer.op is Op.CONV2D and layer.name.startswith(("stem", "s0c0_")):
            x_in = golden.read_as(values[layer.inputs[0]], layer.in_shape)
            zp = layer.quant.inputs[0].zero_point
            kw = dict(stride=layer.stride, padding=layer.padding, dilation=layer.dilation, groups=layer.groups)
            want = ort_conv_integer(x_in, params[layer.name].weights, x_zero_point=zp, **kw)
            got = golden.conv2d_acc(x_in, params[layer.name].weights, x_zero_point=zp, **kw)
            assert np.array_equal(got, want), layer.name
            checked += 1
    assert checked == (5 if cell.vertices > 2 else 2)       # stem, projections, the cell's convs


def test_a_channel_slice_reads_the_first_channels():
    x = np.arange(24, dtype=np.int8).reshape(1, 2, 3, 4)
    assert golden.read_as(x, (1, 2, 3, 3)).tolist() == x[..., :3].tolist()
    assert golden.read_as(x, (1, 24)).tolist() == [list(range(24))]
    assert golden.read_as(x, (1, 2, 3, 5)) is None
