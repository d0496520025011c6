"""The near-memory unit's side of the contract: its geometry, vault images and program compiler.

What the :class:`~mensa.hw.nearmem.NearMemoryUnit` runs (fully connected and pointwise layers, one
matrix-vector product per vector; with ``nearmem.lstm``, LSTM layers) is described in
:mod:`mensa.hw.nearmem`; this module holds what the software must agree on with it.

Memory image of one layer in each vault, from word ``base`` (:func:`fc_program`
writes it): for each group, :data:`HEADER_WORDS` header lane words (byte ``b`` of
each lane's int32 bias in word ``b``, byte ``b`` of its Q31 multiplier in word
``4 + b``, its shift in word 8), then K weight lane words; the whole padded to a
whole number of vault words. Every vector reads the image again from ``base``.

Outputs: int8, through a :class:`~mensa.hw.requant.Requantizer` behind the gather
(each group with its lanes' multipliers and shifts, the layer's output zero point and
clamp), out of ``outs``: bit for bit :func:`mensa.core.golden.fully_connected`. With
``raw = 1`` the int32 accumulators (bias included, wrapping like a 32-bit adder:
:func:`mensa.core.golden.fully_connected_acc` plus the bias) leave through ``accs`` instead.

The program side (:func:`compile_nearmem`, :func:`fc_program`, :func:`lstm_program`) turns a layer into a
descriptor, the vault images and the input vectors, and refuses with
:class:`~mensa.core.errors.CompileError` a layer the unit cannot run.
"""

import math
from dataclasses import dataclass

import numpy as np

from mensa.contract.numeric import ACC_BITS, SHIFT_BITS, accumulator_refusal
from mensa.core.config import ConfigError, NearMemConfig
from mensa.core.errors import CompileError
from mensa.core.golden import activation_range, check_layer
from mensa.core.ir import Activation, Op

__all__ = ["NearMemGeometry", "NearMemProgram", "HEADER_WORDS", "VECTOR_BITS", "GATES", "fc_program", "lstm_program",
           "nearmem_refusal", "compile_nearmem", "descriptor_fields", "pack_descriptor"]

GATES = 4           # i, f, g, o: the order of the gate columns (golden lstm)
HEADER_WORDS = 9    # lane words ahead of each group's weights: bias (4), multiplier (4), shift (1)
VECTOR_BITS = 16    # vectors per layer descriptor
_QUEUE_ENTRY_BYTES = 9  # per lane in the result queue: accumulator, multiplier, shift



@dataclass(frozen=True)
class NearMemGeometry:
    """The sizes a :class:`~mensa.core.config.NearMemConfig` implies, shared by RTL and program.

    ``word_bytes`` bytes arrive per vault word; a lane word is ``lanes`` bytes. Either a
    vault word holds ``ratio`` lane words (``wide``) or a lane word takes ``ratio`` vault
    words. The local buffer of a vault holds ``banks`` input banks of ``max_in`` int8
    elements (two for x; with ``lstm`` also two for h and one for the projection's input)
    and a result queue for two vectors of ``max_groups`` groups: half and half, or with
    ``lstm`` five eighths and three eighths.
    """
    vaults: int
    lanes: int
    word_bytes: int
    wide: bool
    ratio: int
    vault_words: int
    max_in: int
    max_groups: int
    lstm: bool = False

    @classmethod
    def of(cls, config):
        if not isinstance(config, NearMemConfig):
            raise TypeError(f"config must be a NearMemConfig, not {config!r}")
        lanes, word_bytes = config.lanes, config.vault_bits // 8
        # ConfigError is a ValueError the CLI reports in one line.
        if word_bytes % lanes and lanes % word_bytes:
            raise ConfigError(f"nearmem.vault_bits: {config.vault_bits} ({word_bytes} bytes) and nearmem.lanes: "
                              f"{lanes} do not divide one another; allowed: lanes a divisor or a multiple "
                              f"of vault_bits / 8")
        local = config.local_kib * 1024
        if config.lstm:
            max_in = local // 8 // lanes * lanes
            max_groups = local * 3 // 8 // (2 * _QUEUE_ENTRY_BYTES * lanes)
            least = 8 * 2 * GATES * _QUEUE_ENTRY_BYTES * lanes / 3
        else:
            max_in = local // 4 // lanes * lanes
            max_groups = local // (4 * _QUEUE_ENTRY_BYTES * lanes)
            least = 4 * _QUEUE_ENTRY_BYTES * lanes
        if max_in < lanes or max_groups < (GATES if config.lstm else 1):
            raise ConfigError(f"nearmem.local_kib: {config.local_kib} is too small for {lanes} lanes"
                              f"{' with lstm' if config.lstm else ''}; allowed at least "
                              f"{-(-least // 1024):g}")
        wide = word_bytes >= lanes
        return cls(vaults=config.vaults, lanes=lanes, word_bytes=word_bytes, wide=wide,
                   ratio=word_bytes // lanes if wide else lanes // word_bytes,
                   vault_words=config.vault_kib * 1024 // word_bytes, max_in=max_in, max_groups=max_groups,
                   lstm=config.lstm)

    @property
    def in_words(self):
        """Input-buffer words (``lanes`` elements each) per bank."""
        return self.max_in // self.lanes

    @property
    def banks(self):
        """Input banks: x, x (ping-pong); with ``lstm`` also h, h (ping-pong) and m8."""
        return 5 if self.lstm else 2

    @property
    def max_blocks(self):
        """LSTM: blocks of ``lanes`` hidden units per time step at most (over all vaults)."""
        return self.vaults * max(1, self.max_groups // GATES)

    @property
    def max_words(self):
        """Vault words one vector (one LSTM time step) reads at most."""
        lane_words = self.max_groups * (HEADER_WORDS + self.max_in) * (3 if self.lstm else 1)
        return lane_words if self.wide else lane_words * self.ratio

    def _vault_words(self, lane_words):
        return _ceil_div(lane_words, self.ratio) if self.wide else lane_words * self.ratio

    def words(self, in_features, groups):
        """Vault words one vector of an FC layer reads."""
        return self._vault_words(groups * (HEADER_WORDS + in_features))

    def lstm_words(self, in_features, recurrent, groups, proj_in=0, proj_groups=0):
        """Vault words one LSTM time step reads: x and h phases of ``groups`` gate groups, the projection."""
        return self._vault_words(groups * (2 * HEADER_WORDS + in_features + recurrent)
                                 + proj_groups * (HEADER_WORDS + proj_in))


def _bits(stop):
    """Bits of an unsigned field that holds ``0 .. stop - 1`` (as Amaranth sizes a ``range``)."""
    return max(1, (stop - 1).bit_length())


def descriptor_fields(geometry):
    """The layer descriptor, ``(name, bits, signed)`` from bit 0 up: one ``layer`` beat starts a layer."""
    g = geometry
    return (
        ("in_features", _bits(g.max_in + 1), False),        # K; LSTM: C
        ("groups", _bits(g.max_groups + 1), False),         # groups of `lanes` channels per vault; LSTM: 4 x blocks
        ("vectors", VECTOR_BITS, False),                    # M: vectors (batch rows, pixels); LSTM: time steps
        ("base", _bits(g.vault_words), False),              # first vault word of the layer's image
        ("words", _bits(g.max_words + 1), False),           # vault words per vector (time step)
        ("x_zero_point", 8, True),
        ("out_zero_point", 8, True),                        # LSTM: h's zero point
        ("qmin", 8, True),                                  # clamp of the int8 outputs (ReLU, ReLU6)
        ("qmax", 8, True),
        ("raw", 1, False),                                  # 1: int32 accumulators out of `accs`
        ("lstm", 1, False),                                 # 1: an LSTM layer (needs config lstm)
        ("recurrent", _bits(g.max_in + 1), False),          # LSTM: P, the length of h
        ("proj_in", _bits(g.max_in + 1), False),            # LSTM: H, the projection's inputs
        ("proj_groups", _bits(g.max_groups + 1), False),    # LSTM: projection groups per vault; 0: none
        ("out_groups", _bits(g.max_groups + 1), False),     # output beats per vault and vector
        ("hidden_multiplier", ACC_BITS, True),              # LSTM: m -> h (or -> the projection's input)
        ("hidden_shift", SHIFT_BITS, True),
    )


def pack_descriptor(geometry, values):
    """The descriptor ``values`` (field name -> int) as one unsigned integer, field by field from bit 0."""
    word, at = 0, 0
    for name, bits, is_signed in descriptor_fields(geometry):
        v = int(values.get(name, 0))
        lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if is_signed else (0, (1 << bits) - 1)
        if not lo <= v <= hi:
            raise ValueError(f"descriptor field {name} = {v} does not fit {bits} {'signed' if is_signed else 'unsigned'} bits")
        word |= (v & ((1 << bits) - 1)) << at
        at += bits
    return word


@dataclass(frozen=True, eq=False)
class NearMemProgram:
    """One layer for a :class:`NearMemoryUnit`, as :func:`fc_program` or :func:`lstm_program` lays it out.

    Members
    -------
    geometry : :class:`NearMemGeometry`
    descriptor : dict
        Field values of :func:`descriptor_fields`.
    images : tuple of uint8 arrays
        Vault ``v``'s bytes from word ``descriptor["base"]``, a whole number of vault words.
    inputs : int8 array (M, K)
        The input vectors (LSTM: x_t, one per time step).
    out_channels : int
        N (LSTM: P); the unit emits ``vaults * out_groups * lanes`` channels per vector, the
        first N real.
    """
    geometry: NearMemGeometry
    descriptor: dict
    images: tuple
    inputs: np.ndarray
    out_channels: int

    @property
    def vectors(self):
        return self.descriptor["vectors"]

    @property
    def out_beats(self):
        """Output beats per vector."""
        return self.geometry.vaults * self.descriptor["out_groups"]

    @property
    def words(self):
        """Vault words each vault reads per vector (time step)."""
        return self.descriptor["words"]

    def descriptor_word(self):
        """The descriptor as the unsigned integer a ``layer`` beat carries."""
        return pack_descriptor(self.geometry, self.descriptor)

    def input_beats(self):
        """The ``inputs`` beats of every vector, as unsigned integers (lane 0 in the low byte)."""
        L = self.geometry.lanes
        m, k = self.inputs.shape
        padded = np.zeros((m, _ceil_div(k, L) * L), dtype=np.int8)
        padded[:, :k] = self.inputs
        rows = padded.view(np.uint8).reshape(-1, L)
        return [int.from_bytes(row.tobytes(), "little") for row in rows]

    def outputs(self, beats):
        """(M, N) from the ``(M * out_beats, lanes)`` array of output lanes, in beat order."""
        beats = np.asarray(beats)
        return beats.reshape(self.vectors, -1)[:, :self.out_channels]


def _ceil_div(a, b):
    return -(-a // b)


def _per_channel(value, n, name, lo, hi):
    arr = np.broadcast_to(np.asarray(value if value is not None else 0, dtype=np.int64), (n,))
    if arr.size and (arr.min() < lo or arr.max() > hi):
        raise ValueError(f"{name}: values must lie in {lo}..{hi}")
    return arr


def _groups(weights, width, lanes, *, bias=None, multiplier=0, shift=0, name=""):
    """The lane words of ``width // lanes`` groups: ``(groups, HEADER_WORDS + K, lanes)`` uint8.

    ``weights (K, n)``, zero-padded to ``width`` channels; header per channel: bias,
    multiplier, shift (scalars or per channel; checked for range).
    """
    k, n = weights.shape
    w = np.zeros((k, width), dtype=np.int8)
    w[:, :n] = weights
    header = np.zeros((HEADER_WORDS, width), dtype=np.uint8)
    planes = lambda v: np.asarray(v, dtype="<i4").view(np.uint8).reshape(-1, 4).T   # noqa: E731
    header[0:4, :n] = planes(_per_channel(bias, n, f"{name}bias", -(1 << 31), (1 << 31) - 1))
    header[4:8, :n] = planes(_per_channel(multiplier, n, f"{name}multiplier", 0, (1 << 31) - 1))
    header[8, :n] = _per_channel(shift, n, f"{name}shift", -32, 31).astype(np.int8).view(np.uint8)
    body = np.concatenate([header, w.view(np.uint8)])                # (9 + K, width)
    return body.reshape(HEADER_WORDS + k, width // lanes, lanes).transpose(1, 0, 2)


def _image(geometry, words, parts):
    """A vault's image: the lane words of ``parts`` in order, padded to ``words`` vault words."""
    lane_words = np.concatenate([p.reshape(-1) for p in parts])
    image = np.zeros(words * geometry.word_bytes, dtype=np.uint8)
    image[:lane_words.size] = lane_words
    return image


def _fc_refusal(g, m, k, n, base=0):
    """Why ``m`` vectors of ``k`` features times a ``k x n`` matrix do not fit the unit ("" if they do)."""
    if k > g.max_in:
        return (f"{k} input features do not fit the input buffer; allowed at most {g.max_in} "
                f"(local_kib / {8 if g.lstm else 4} per bank)")
    groups = _ceil_div(_ceil_div(n, g.vaults), g.lanes)         # groups of L channels per vault
    if groups > g.max_groups:
        return (f"{n} output channels need {groups} groups of {g.lanes} per vault; allowed at most "
                f"{g.max_groups} ({g.max_groups * g.lanes * g.vaults} channels)")
    if not 1 <= m < (1 << VECTOR_BITS):
        return f"{m} vectors; allowed 1..{(1 << VECTOR_BITS) - 1}"
    words = g.words(k, groups)
    if base + words > g.vault_words:
        return f"{words} words per vault from word {base} exceed the vault's {g.vault_words}"
    return ""


def _lstm_refusal(g, steps, c, p, hidden, proj, base=0):
    """Why an LSTM of ``steps`` x ``c`` inputs, ``hidden`` units and ``p`` outputs (a projection if
    ``proj``) does not fit the unit ("" if it does)."""
    if not g.lstm:
        return ("lstm needs the LSTM datapath; allowed: fc or pointwise conv on this unit, or a config "
                "with nearmem.lstm = true")
    for what, size in (("input", c), ("recurrent", p), ("hidden", hidden)):
        if size > g.max_in:
            return (f"{size} {what} features do not fit an input bank; allowed at most {g.max_in} "
                    f"(local_kib / 8 per bank)")
    L, V = g.lanes, g.vaults
    groups = 4 * _ceil_div(_ceil_div(hidden, V), L)        # four gate groups per block of L hidden units
    if groups > g.max_groups:
        return (f"{hidden} hidden units need {groups} gate groups of {L} per vault; allowed at most "
                f"{g.max_groups} ({g.max_groups // 4 * L * V} hidden units)")
    proj_groups = _ceil_div(_ceil_div(p, V), L) if proj else 0
    if proj_groups > g.max_groups:
        return (f"{p} projection outputs need {proj_groups} groups of {L} per vault; allowed at most "
                f"{g.max_groups} ({g.max_groups * L * V} outputs)")
    if not 1 <= steps < (1 << VECTOR_BITS):
        return f"{steps} time steps; allowed 1..{(1 << VECTOR_BITS) - 1}"
    words = g.lstm_words(c, p, groups, hidden if proj else 0, proj_groups)
    if base + words > g.vault_words:
        return f"{words} words per vault from word {base} exceed the vault's {g.vault_words}"
    return ""


def fc_program(geometry, weights, x, *, bias=None, multiplier=0, shift=0, x_zero_point=0,
               out_zero_point=0, qmin=-128, qmax=127, raw=False, base=0, name="layer"):
    """Lay out ``x (M, K) @ weights (K, N) + bias`` for a :class:`NearMemoryUnit`.

    ``multiplier``, ``shift`` (per channel or scalar) requantise to int8 when ``raw`` is
    false (:func:`mensa.core.golden.requantize`). Raises :class:`CompileError` if the
    layer does not fit the unit.
    """
    g = geometry
    weights = np.asarray(weights)
    x = np.asarray(x)
    if weights.ndim != 2 or x.ndim != 2 or x.shape[1] != weights.shape[0]:
        raise ValueError(f"fc_program: x {x.shape} and weights {weights.shape} do not chain")
    (m, k), n = x.shape, weights.shape[1]
    L, V = g.lanes, g.vaults

    reason = _fc_refusal(g, m, k, n, base)
    if reason:
        raise CompileError(f"layer {name!r}: {reason}")
    groups = _ceil_div(_ceil_div(n, V), L)         # groups of L channels per vault
    words = g.words(k, groups)

    body = _groups(weights, V * groups * L, L, bias=bias, multiplier=multiplier, shift=shift)
    images = tuple(_image(g, words, [body[v * groups:(v + 1) * groups]]) for v in range(V))
    descriptor = {"in_features": k, "groups": groups, "vectors": m, "base": base, "words": words,
                  "x_zero_point": int(x_zero_point), "out_zero_point": int(out_zero_point),
                  "qmin": int(qmin), "qmax": int(qmax), "raw": int(bool(raw)),
                  "lstm": 0, "recurrent": 0, "proj_in": 0, "proj_groups": 0, "out_groups": groups,
                  "hidden_multiplier": 0, "hidden_shift": 0}
    return NearMemProgram(geometry=g, descriptor=descriptor, images=images,
                          inputs=x.astype(np.int8), out_channels=n)


def lstm_program(geometry, x, w, bias, *, x_zero_point, h_zero_point, input_multiplier, input_shift,
                 recurrent_multiplier, recurrent_shift, hidden_multiplier, hidden_shift,
                 projection_weights=None, projection_bias=None, projection_multiplier=None,
                 projection_shift=None, base=0, name="layer"):
    """Lay out one sequence of :func:`mensa.core.golden.lstm` for a :class:`NearMemoryUnit`.

    ``x`` int8 (T, C); the other arguments as in :func:`mensa.core.golden.lstm`. Hidden
    units are split over the vaults in blocks of ``lanes``: vault ``v`` holds the ``blocks``
    blocks from ``v * blocks``. Per time step each vault reads its image again: for each of
    its blocks the four gates' groups (i, f, g, o) over x (header: bias, input
    multiplier and shift), then the same groups over h (header: zero bias, recurrent
    multiplier and shift), then, with a projection, its ``proj_groups`` groups of
    projection channels over m8 (header: projection bias, multiplier, shift).
    Raises :class:`CompileError` if the layer does not fit the unit.
    """
    g = geometry
    L, V = g.lanes, g.vaults
    x = np.asarray(x)
    w = np.asarray(w)

    if x.ndim != 2 or w.ndim != 2 or w.shape[1] % 4:
        raise ValueError(f"lstm_program: x {x.shape} (T, C) and w {w.shape} (C + P, 4H) expected")
    (steps, c), hidden = x.shape, w.shape[1] // 4
    proj = projection_weights is not None
    p = np.shape(projection_weights)[1] if proj else hidden
    if w.shape[0] != c + p:
        raise ValueError(f"lstm_program: weights {w.shape} do not match ({c} + {p}, 4 * {hidden})")
    reason = _lstm_refusal(g, steps, c, p, hidden, proj, base)
    if reason:
        raise CompileError(f"layer {name!r}: {reason}")
    blocks = _ceil_div(_ceil_div(hidden, V), L)        # blocks of L hidden units per vault
    groups = 4 * blocks
    proj_groups = _ceil_div(_ceil_div(p, V), L) if proj else 0
    if np.ndim(hidden_multiplier) or np.ndim(hidden_shift):
        raise ValueError("lstm_program: hidden_multiplier and hidden_shift are one value for the layer")
    words = g.lstm_words(c, p, groups, hidden if proj else 0, proj_groups)

    # Gate columns q * H + j -> blocks of L hidden units, four gate groups a block.
    width = V * blocks * L
    order = np.full((V * blocks, 4, L), -1)
    j = np.arange(width).reshape(V * blocks, 1, L)
    cols = np.arange(4).reshape(1, 4, 1) * hidden + j
    order[...] = np.where(j < hidden, cols, -1)
    order = order.reshape(-1)                           # group-major: block, gate, lane

    def gate_groups(rows, b, mult, sh):
        picked = np.zeros((rows.shape[0], order.size), dtype=np.int8)
        real = order >= 0
        picked[:, real] = rows[:, order[real]]
        def per(v):         # a per-gate-column value (or scalar) in group order; padding 0
            if v is None:
                return None
            return np.where(real, np.broadcast_to(np.asarray(v), (4 * hidden,))[np.maximum(order, 0)], 0)
        return _groups(picked, order.size, L, bias=per(b), multiplier=per(mult), shift=per(sh),
                       name="gate ")
    gx = gate_groups(w[:c], bias, input_multiplier, input_shift)
    gh = gate_groups(w[c:], None, recurrent_multiplier, recurrent_shift)
    pg = None
    if proj:
        pg = _groups(np.asarray(projection_weights), V * proj_groups * L, L, bias=projection_bias,
                     multiplier=projection_multiplier, shift=projection_shift, name="projection ")
    images = []
    for v in range(V):
        parts = [gx[v * groups:(v + 1) * groups], gh[v * groups:(v + 1) * groups]]
        if proj:
            parts.append(pg[v * proj_groups:(v + 1) * proj_groups])
        images.append(_image(g, words, parts))
    hm = int(hidden_multiplier)
    hs = int(hidden_shift)
    if not (0 <= hm < (1 << 31) and -32 <= hs <= 31):
        raise ValueError(f"hidden_multiplier {hm} / hidden_shift {hs} out of range (0..2**31-1, -32..31)")
    descriptor = {"in_features": c, "groups": groups, "vectors": steps, "base": base, "words": words,
                  "x_zero_point": int(x_zero_point), "out_zero_point": int(h_zero_point),
                  "qmin": -128, "qmax": 127, "raw": 0, "lstm": 1, "recurrent": p,
                  "proj_in": hidden if proj else 0, "proj_groups": proj_groups,
                  "out_groups": proj_groups if proj else blocks,
                  "hidden_multiplier": hm, "hidden_shift": hs}
    return NearMemProgram(geometry=g, descriptor=descriptor, images=tuple(images),
                          inputs=x.astype(np.int8), out_channels=p)


def _abs_max(values):
    return 0 if values is None else int(np.abs(np.asarray(values, np.int64)).max(initial=0))


def _fc_shape(layer):
    """``(m, k, n)``: the matrix-vector products of an FC or pointwise layer."""
    k, n = layer.in_channels, layer.out_channels
    return math.prod(layer.in_shape) // k, k, n


def nearmem_refusal(geometry, layer):
    """Why the near-memory unit of ``geometry`` cannot run ``layer`` ("" when it can).

    Every rule of :func:`compile_nearmem` that depends on the layer's shape alone (op,
    activation, kernel, the buffers and vaults against the sizes): the scheduler places a
    layer only where this is empty.
    """
    allowed = "allowed: fc, or conv2d with a 1x1 kernel, stride 1, no padding and groups 1"
    if geometry.lstm:
        allowed += ", or lstm"
    if layer.op is Op.LSTM:
        if not geometry.lstm:
            return ("lstm cannot run on a near-memory unit without the LSTM datapath (nearmem.lstm = "
                    "false); allowed: fc, or conv2d with a 1x1 kernel, stride 1, no padding and groups 1")
        if layer.in_shape[0] != 1:
            return (f"lstm over a batch of {layer.in_shape[0]} sequences; allowed: one sequence (N = 1) "
                    f"per program, the state stays on chip between its time steps")
        if layer.activation is not Activation.NONE:
            return f"activation {layer.activation.value} cannot be fused after an lstm; allowed: none"
        proj = bool(layer.projection)
        return _lstm_refusal(geometry, layer.in_shape[1], layer.in_channels, layer.out_channels, layer.hidden,
                             proj)
    if layer.op is Op.CONV2D:
        if layer.kernel != (1, 1):
            return (f"conv2d with a {layer.kernel[0]}x{layer.kernel[1]} kernel is not a matrix-vector "
                    f"product; the near-memory unit cannot run it; {allowed}")
        if layer.stride != (1, 1) or any(layer.padding) or layer.groups != 1:
            return (f"conv2d with stride {layer.stride}, padding {layer.padding}, groups {layer.groups} "
                    f"cannot run on the near-memory unit; {allowed}")
    elif layer.op is not Op.FC:
        return f"{layer.op.value} cannot run on the near-memory unit; {allowed}"
    if layer.activation not in (Activation.NONE, Activation.RELU, Activation.RELU6):
        return (f"activation {layer.activation.value} cannot be fused on the near-memory unit; "
                f"allowed: none, relu, relu6")
    return _fc_refusal(geometry, *_fc_shape(layer))


def compile_nearmem(geometry, layer, params, x, *, base=0):
    """A quantised layer on int8 input ``x`` -> :class:`NearMemProgram` with int8 outputs.

    The unit runs matrix-vector products: fully connected layers (``(N, C)`` or
    ``(N, T, C)`` inputs, one vector per row) and pointwise convolutions (1x1 kernel,
    stride 1, no padding, one group: one vector per pixel), with no activation or ReLU /
    ReLU6; and, with the LSTM datapath (``nearmem.lstm``), LSTM layers of one sequence
    (``(1, T, C)`` inputs). Anything else raises :class:`CompileError`
    (:func:`nearmem_refusal`).
    """
    check_layer(layer)

    def refuse(text):
        raise CompileError(f"layer {layer.name!r}: {text}")
    reason = nearmem_refusal(geometry, layer)
    if reason:
        refuse(reason)
    if layer.quant is None:
        refuse("quant: missing; quantise the network first (mensa.core.quant.quantize_network)")
    q = layer.quant
    if layer.op is Op.LSTM:
        w = np.asarray(params.weights)
        c = layer.in_shape[-1]
        # the gates' input half (with the bias) and recurrent half are separate int32 sums
        reason = (accumulator_refusal(c, q.inputs[0].zero_point, _abs_max(w[:c]), _abs_max(params.bias))
                  or accumulator_refusal(w.shape[0] - c, q.output.zero_point, _abs_max(w[c:]), 0))
        if reason:
            refuse(reason)
        x = np.asarray(x).reshape(layer.in_shape)[0]
        return lstm_program(geometry, x, params.weights, params.bias,
                            x_zero_point=q.inputs[0].zero_point, h_zero_point=q.output.zero_point,
                            input_multiplier=params.multiplier, input_shift=params.shift,
                            recurrent_multiplier=params.recurrent_multiplier,
                            recurrent_shift=params.recurrent_shift,
                            hidden_multiplier=params.hidden_multiplier, hidden_shift=params.hidden_shift,
                            projection_weights=params.projection_weights,
                            projection_bias=params.projection_bias,
                            projection_multiplier=params.projection_multiplier,
                            projection_shift=params.projection_shift, base=base, name=layer.name)
    weights = np.asarray(params.weights).reshape(layer.in_channels, layer.out_channels)
    reason = accumulator_refusal(layer.in_channels, q.inputs[0].zero_point, _abs_max(weights), _abs_max(params.bias))
    if reason:
        refuse(reason)
    qmin, qmax = activation_range(layer.activation, q.output.scale, q.output.zero_point)
    x = np.asarray(x).reshape(-1, layer.in_channels)
    return fc_program(geometry, weights, x, bias=params.bias, multiplier=params.multiplier,
                      shift=params.shift, x_zero_point=q.inputs[0].zero_point,
                      out_zero_point=q.output.zero_point, qmin=qmin, qmax=qmax, base=base,
                      name=layer.name)
