"""The register map of an accelerator, described once, and the AXI4-Lite slave built from it.

:func:`register_map` turns an accelerator config into a :class:`RegisterMap`: every
register's name, byte offset, width, access and meaning. The same object elaborates
:class:`RegisterFile` (the AXI4-Lite slave), writes the C header
(:mod:`mensa.contract.header`) and drives the program compiler, so the RTL, the header and
the software never disagree about an offset.

Registers are 32-bit words at consecutive offsets; a register narrower than 32 bits
reads its unused high bits as zero (a signed one, as copies of its sign bit). A
quantity wider than 32 bits (a 64-bit cycle counter, a DRAM address when
``memory.addr_bits > 32``) is two registers, ``NAME_LO`` and ``NAME_HI``.

Every map begins with ``ID`` and then the run-control registers and performance counters (CTRL,
STATUS, IRQ_ENABLE, IRQ_STATUS, CYCLES_*), at the same offsets on every kind of accelerator: one
runtime (``mensa_runtime.c``) starts and waits for a systolic and a near-memory one alike.

Access kinds:

``rw``
    Software writes, reads back; the hardware sees the value (the layer descriptor).
``ro``
    The hardware drives the value; writes are ignored. A register with ``const`` set
    holds that constant (identification, the configuration the RTL was built for).
``wo``
    A write hands the written bits to the hardware for one cycle (``CTRL.START``); reads
    return zero.
``w1c``
    The hardware sets bits; software clears a bit by writing 1 to it (interrupt status).
"""

import enum
from dataclasses import dataclass, field

from mensa.contract.gemm import act_depth, weight_depth
from mensa.contract.nearmem import NearMemGeometry, descriptor_fields
from mensa.core.config import AcceleratorConfig, CoreKind, Dataflow
from mensa.core.ir import Op

__all__ = ["Access", "Register", "RegisterMap", "register_map", "OPCODES", "MAGIC", "DATA_BITS",
           "RESP_OKAY", "RESP_SLVERR", "COUNTER_BITS", "VECTOR_OPS", "NEARMEM_FIELDS", "line_depth"]

MAGIC = 0x4D4E5341            # "MNSA": the ID register
COUNTER_BITS = 64             # performance counters: no wrap in centuries at any clock
DATA_BITS = 32                # AXI4-Lite data width of the register interface
RESP_OKAY = 0
RESP_SLVERR = 2               # an address with no register behind it

# The layer kinds the systolic accelerator runs (pointwise is CONV2D with a 1x1 kernel); with a
# vector unit (``config.vector``) DEPTHWISE and the element-wise and pooling ops run on it.
OPCODES = {Op.CONV2D: 0, Op.DEPTHWISE: 1, Op.FC: 2, Op.ADD: 3, Op.MUL: 4, Op.MAXPOOL: 5, Op.AVGPOOL: 6,
           Op.GLOBAL_AVGPOOL: 7}
#: the opcodes the vector unit runs when the accelerator has one
VECTOR_OPS = (Op.DEPTHWISE, Op.ADD, Op.MUL, Op.MAXPOOL, Op.AVGPOOL, Op.GLOBAL_AVGPOOL)


class Access(enum.Enum):
    RW = "rw"
    RO = "ro"
    WO = "wo"
    W1C = "w1c"


@dataclass(frozen=True)
class Register:
    """One 32-bit register of the map.

    ``bits`` names single-bit flags (name -> bit index); ``values`` names the codes an
    enumerated register takes (name -> value); ``const`` is the value of a constant
    read-only register.
    """
    name: str
    offset: int
    width: int
    access: Access
    doc: str
    signed: bool = False
    const: int | None = None
    bits: tuple[tuple[str, int], ...] = ()
    values: tuple[tuple[str, int], ...] = ()

    def __post_init__(self):
        if not self.name.isidentifier() or self.name.upper() != self.name:
            raise ValueError(f"register name must be an upper-case identifier, not {self.name!r}")
        if self.offset % 4:
            raise ValueError(f"register {self.name}: offset {self.offset:#x} is not word-aligned")
        if not 1 <= self.width <= DATA_BITS:
            raise ValueError(f"register {self.name}: width must be in 1..{DATA_BITS}, not {self.width}")
        if self.const is not None and self.access is not Access.RO:
            raise ValueError(f"register {self.name}: only a read-only register can be constant")

    @property
    def port(self):
        """The name of the register's field on the hardware side."""
        return self.name.lower()



@dataclass(frozen=True)
class RegisterMap:
    """An ordered, named collection of registers."""
    registers: tuple[Register, ...]
    _by_name: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        names, offsets = {}, {}
        for r in self.registers:
            if r.name in names:
                raise ValueError(f"register {r.name} is described twice")
            if r.offset in offsets:
                raise ValueError(f"registers {offsets[r.offset]} and {r.name} share offset {r.offset:#x}")
            names[r.name] = r
            offsets[r.offset] = r.name
        object.__setattr__(self, "_by_name", names)

    def __iter__(self):
        return iter(self.registers)

    def __len__(self):
        return len(self.registers)

    def __getitem__(self, name):
        return self._by_name[name]

    def __contains__(self, name):
        return name in self._by_name

    def of(self, *access, const=False):
        """The registers of the given access kinds (constants only if ``const``)."""
        return [r for r in self.registers if r.access in access and (r.const is not None) == const]

    @property
    def size(self):
        """Bytes of address space the map decodes (a power of two)."""
        end = max(r.offset for r in self.registers) + 4
        return 1 << (end - 1).bit_length()

    @property
    def addr_bits(self):
        return (self.size - 1).bit_length()


class _Builder:
    def __init__(self):
        self.registers = []

    def add(self, name, width, access, doc, **kwargs):
        self.registers.append(Register(name, 4 * len(self.registers), width, access, doc, **kwargs))

    def wide(self, name, width, access, doc):
        """A quantity of ``width`` bits: one register, or a _LO/_HI pair above 32 bits."""
        if width <= DATA_BITS:
            self.add(name, width, access, doc)
        else:
            self.add(f"{name}_LO", DATA_BITS, access, f"{doc} (bits 31..0)")
            self.add(f"{name}_HI", width - DATA_BITS, access, f"{doc} (bits {width - 1}..32)")


def _run_registers(b, busy, stall="cycles the accelerator waited on DRAM"):
    """CTRL, STATUS, the interrupt and the performance counters: the same on every kind of accelerator."""
    RO, WO, RW, W1C = Access.RO, Access.WO, Access.RW, Access.W1C
    b.add("CTRL", 1, WO, "write START to run the layer described by the descriptor", bits=(("START", 0),))
    b.add("STATUS", 2, RO, "BUSY while a layer runs; DONE once it has finished, until the next START",
          bits=(("BUSY", 0), ("DONE", 1)))
    b.add("IRQ_ENABLE", 1, RW, "interrupt enables", bits=(("DONE", 0),))
    b.add("IRQ_STATUS", 1, W1C, "pending interrupts, write 1 to clear", bits=(("DONE", 0),))
    # performance counters, cleared by START
    for name, doc in (("CYCLES_TOTAL", "cycles from START to DONE"),
                      ("CYCLES_BUSY", busy),
                      ("CYCLES_STALL", stall)):
        b.wide(name, COUNTER_BITS, RO, doc)


#: the near-memory descriptor's fields (:func:`mensa.contract.nearmem.descriptor_fields`) that are registers
#: of the near-memory accelerator, with their meaning. ``raw`` is not: the accelerator writes int8 outputs
#: to DRAM, never the int32 accumulators.
NEARMEM_FIELDS = {
    "in_features": "input elements per vector (K; LSTM: C, the length of x_t)",
    "groups": "groups of LANES output channels per vault (LSTM: 4 x blocks of LANES hidden units)",
    "vectors": "input vectors (batch rows, pixels; LSTM: time steps)",
    "base": "first vault word of the layer's image in every vault",
    "words": "vault words each vault reads per vector (time step)",
    "x_zero_point": "input zero point",
    "out_zero_point": "output zero point (LSTM: h's)",
    "qmin": "lower clamp of the int8 outputs (ReLU: the zero point)",
    "qmax": "upper clamp of the int8 outputs (ReLU6: zero point + 6 / scale)",
    "lstm": "1: an LSTM layer (needs LSTM_DATAPATH)",
    "recurrent": "LSTM: the length of h (P)",
    "proj_in": "LSTM: the projection's inputs (H); 0: no projection",
    "proj_groups": "LSTM: projection groups per vault; 0: no projection",
    "out_groups": "output beats of LANES channels per vault and vector",
    "hidden_multiplier": "LSTM: Q31 multiplier of m -> h (or -> the projection's input)",
    "hidden_shift": "LSTM: shift of m -> h",
}


def _nearmem_map(config):
    """The near-memory accelerator's registers (:mod:`mensa.hw.nearmem_accelerator`)."""
    nm = config.nearmem
    g = NearMemGeometry.of(nm)
    RO, RW = Access.RO, Access.RW
    b = _Builder()
    b.add("ID", 32, RO, "identification, the ASCII 'MNSA'", const=MAGIC)
    _run_registers(b, "cycles the near-memory unit held a layer",
                   "cycles a port of the unit waited on the DMA: an input beat not yet read from DRAM, or an output "
                   "beat not yet taken (its vaults may be computing an earlier vector meanwhile)")
    b.add("VAULTS", 8, RO, "vaults, one memory port each", const=g.vaults)
    b.add("LANES", 8, RO, "int8 MAC lanes per vault", const=g.lanes)
    b.add("VAULT_BITS", 16, RO, "data bits of a vault port's word", const=nm.vault_bits)
    b.add("VAULT_WORDS", 32, RO, "words of one vault", const=g.vault_words)
    b.add("MAX_IN", 32, RO, "input elements a vector may have at most", const=g.max_in)
    b.add("MAX_GROUPS", 16, RO, "groups of LANES channels per vault at most", const=g.max_groups)
    b.add("LSTM_DATAPATH", 1, RO, "1: the unit runs LSTM layers", const=int(g.lstm))
    b.add("BUS_BITS", 16, RO, "AXI4 data width of the DRAM interface", const=config.memory.data_bits)
    for name, bits, is_signed in descriptor_fields(g):
        if name not in NEARMEM_FIELDS:
            continue
        if bits <= DATA_BITS:
            b.add(name.upper(), bits, RW, NEARMEM_FIELDS[name], signed=is_signed)
        else:
            b.wide(name.upper(), bits, RW, NEARMEM_FIELDS[name])
    addr = config.memory.addr_bits
    b.wide("INPUT_ADDR", addr, RW, "DRAM byte address of the input vectors, IN_VECTOR_WORDS bus words each")
    b.wide("OUTPUT_ADDR", addr, RW, "DRAM byte address of the int8 output vectors")
    b.add("IN_VECTOR_WORDS", 32, RW, "bus words of one input vector in DRAM")
    return RegisterMap(tuple(b.registers))


def register_map(config):
    """The register map of the accelerator ``config`` (an :class:`AcceleratorConfig`), of its kind."""
    if not isinstance(config, AcceleratorConfig):
        raise TypeError(f"config must be an AcceleratorConfig, not {config!r}")
    if config.kind is CoreKind.NEARMEM:
        return _nearmem_map(config)
    a = config.array
    RW, RO = Access.RW, Access.RO
    b = _Builder()
    # identification and the configuration the RTL was generated for
    b.add("ID", 32, RO, "identification, the ASCII 'MNSA'", const=MAGIC)
    # control, status, interrupt, performance counters: at the same offsets on every kind
    _run_registers(b, "cycles the array computed")
    # the configuration the RTL was generated for
    b.add("ROWS", 16, RO, "systolic array rows (PEs along the reduction)", const=a.rows)
    b.add("COLS", 16, RO, "systolic array columns (output channels per pass)", const=a.cols)
    b.add("DATAFLOW", 1, RO, "0: weight-stationary, 1: output-stationary",
          const=int(a.dataflow is Dataflow.OUTPUT_STATIONARY))
    b.add("BUS_BITS", 16, RO, "AXI4 data width of the DRAM interface", const=config.memory.data_bits)
    b.add("ACT_DEPTH", 32, RO, "activation vectors in each half of the activation scratchpad",
          const=act_depth(config))
    b.add("WEIGHT_DEPTH", 32, RO, "weight vectors the weight buffer holds",
          const=weight_depth(config))
    # the layer descriptor
    b.add("OP", 4, RW, "layer kind", values=tuple((op.name, code) for op, code in OPCODES.items()))
    for name, doc in (("IN_H", "input height"), ("IN_W", "input width"), ("IN_C", "input channels"),
                      ("OUT_H", "output height"), ("OUT_W", "output width"), ("OUT_C", "output channels"),
                      ("TILE_ROWS", "output rows per M tile (1 unless TILE_COLS is OUT_W)"),
                      ("TILE_COLS", "output columns per M tile; TILE_ROWS x TILE_COLS at most the accumulator "
                                    "depth, and the tile's input window at most ACT_DEPTH vectors")):
        b.add(name, 16, RW, doc)
    for name, doc in (("KERNEL_H", "kernel height"), ("KERNEL_W", "kernel width"),
                      ("STRIDE_H", "vertical stride"), ("STRIDE_W", "horizontal stride"),
                      ("DILATION_H", "vertical dilation"), ("DILATION_W", "horizontal dilation"),
                      ("PAD_TOP", "zero-point rows above the input"),
                      ("PAD_BOTTOM", "zero-point rows below the input"),
                      ("PAD_LEFT", "zero-point columns left of the input"),
                      ("PAD_RIGHT", "zero-point columns right of the input")):
        b.add(name, 8, RW, doc)
    b.add("WEIGHTS_RESIDENT", 1, RW, "1: the layer's weights fit the weight buffer; the first M tile reads them "
                                     "from DRAM and stores them, the others read the buffer")
    for name, doc in (("IN_ZERO_POINT", "input zero point"), ("OUT_ZERO_POINT", "output zero point"),
                      ("QMIN", "lower clamp of the output (ReLU: the zero point)"),
                      ("QMAX", "upper clamp of the output (ReLU6: zero point + 6 / scale)")):
        b.add(name, 8, RW, doc, signed=True)
    addr = config.memory.addr_bits
    for name, doc in (("INPUT_ADDR", "DRAM byte address of the input, NHWC int8"),
                      ("WEIGHT_ADDR", "DRAM byte address of the weights"),
                      ("BIAS_ADDR", "DRAM byte address of the int32 biases"),
                      ("QUANT_ADDR", "DRAM byte address of the per-channel multipliers and shifts"),
                      ("OUTPUT_ADDR", "DRAM byte address of the output, NHWC int8")):
        b.wide(name, addr, RW, doc)
    # a table activation (sigmoid, tanh, hard-swish, hard-sigmoid) after the requantiser, of either engine
    b.add("ACT_TABLE", 1, RW, "1: the requantised output goes through the 256-entry activation table")
    b.wide("TABLE_ADDR", addr, RW, "DRAM byte address of the activation table (int8 T[q + 128]), read at the "
                                   "layer's start when ACT_TABLE is 1")
    # the vector unit (mensa.contract.vector_program); VECTOR_LANES 0: none
    v = config.vector
    b.add("VECTOR_LANES", 8, RO, "vector unit lanes (channels per pixel vector); 0: no vector unit",
          const=v.lanes if v else 0)
    if v:
        b.add("LINE_DEPTH", 32, RO, "pixel vectors the vector unit's line buffer holds", const=line_depth(config))
        b.add("LINE_ROWS", 8, RW, "input rows of the line buffer's ring: at least the window's rows plus the "
                                  "vertical stride, so the next output row's rows load while this one computes")
        b.add("IN2_ZERO_POINT", 8, RW, "zero point of the second input (add's, mul's gate)", signed=True)
        b.wide("INPUT2_ADDR", config.memory.addr_bits, RW, "DRAM byte address of the second input (add's, "
                                                           "mul's gate)")
        for n, which in (("", "first"), ("2", "second")):
            b.add(f"IN{n}_MULTIPLIER", 32, RW, f"add: Q31 multiplier of the {which} input's rescale", signed=True)
            b.add(f"IN{n}_SHIFT", 8, RW, f"add: shift of the {which} input's rescale (at most 0)", signed=True)
    return RegisterMap(tuple(b.registers))


def line_depth(config):
    """Pixel vectors (``vector.lanes`` bytes each) of the vector unit's line buffer (0 without one)."""
    v = config.vector
    return v.line_kib * 1024 // v.lanes if v else 0
