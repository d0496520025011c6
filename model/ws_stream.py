"""The DRAM read stream of a weight-stationary array fed by its sequencer, and what of it the array waits for.

The stream (:mod:`mensa.hw.sequencer`): per M tile the loader reads the tile's input
window (when the activations spill to DRAM) into one half of the ping-pong activation
scratchpad, one command per channel tile (per window row and channel tile for part of a
row; :mod:`mensa.model.tiling`). The walk reads per N tile the tile's quantisation record
and per K tile ``rows`` weight vectors; the array takes its activations from the
scratchpad at a vector per cycle. Every vector is whole bus words, and every command is
cut into bursts of at most ``max_burst`` beats on its own: a full tile's commands of
``Tiling.run`` vectors, a short tile's of ``Tiling.run_short``. Weights that stay in the
weight buffer are read in the first pass only; otherwise every pass over M tiles, groups
and steps reads them again.

The stream overlaps the compute; its length is the largest of these bounds:

bus
    every word, ``word_bytes / bytes per cycle`` cycles each (at least one);
reads in flight
    every burst holds one of :data:`READS_IN_FLIGHT` (``F``) slots for the DRAM latency
    plus ``Calibration.dram_turnaround`` (a *hold*) and its beats
    (:mod:`mensa.model.bursts`): a K tile's weight bursts repeat from tile to tile, the
    records ride on the bus, the windows' bursts hold slots besides, and a short layer (one
    M tile, at most ``SHORT_BURSTS`` bursts) is solved burst by burst. The first ``F``
    bursts' latency is the exposed first latency (``Cost.dma``). A window the loader could
    not read ahead goes out plane, weights, plane, weights over the first tap's K tiles, and
    burst ``j`` reuses the slot of burst ``j - F``: the planes' and the weights' bursts then
    hold slot chains of their own, and the stream runs at the slower chain's rate
    (:func:`~mensa.model.bursts.burst_chain` of the pattern), not at the average of the two;
the loader
    it asks for a window only once every word of the one before is in (it commits the half
    first), so per later window its reads drain (a hold), and the next tile's quantisation
    record, asked behind them and taken once the record buffer is free (the tile before
    requantised), adds a hold and its words;
record order
    with the weights re-read, the DMA answers in order and a record's words are taken only
    once the record buffer is free, so each N tile's record blocks the read slots -- itself
    and the bursts behind it -- through the last ``F`` K tiles of the N tile before and the
    array's drain, beyond the hold the slots take anyway;
the walk's lead
    the walk asks for a K tile's weights only after queueing the activation segments of the
    K tiles before it (``ROUTE_DEPTH`` of them), so about ``ROUTE_DEPTH / segments`` K tiles
    ahead of the array; with the weights re-read, a K tile takes at least a read's hold, its
    weight words and the bank's ``rows`` load cycles over that lead, at least its weights'
    reads in flight and at least its activations -- per M tile, full tiles and the short one
    apart (a tile's slack does not carry over to the next);
weight banks
    a K tile's weights load only into a retired bank, ``rows + cols - 1`` cycles after the
    last activation of the tile two before, so two K tiles take at least that plus one
    tile's weight words and activations; an N tile's record delays the next tile's weights
    beyond that when it is longer than half a turnaround.

A table activation's table (``TABLE_ENTRIES`` bytes, in bursts of its own) is read first, its command
``Calibration.ws_table_lead`` cycles ahead of the first window's: the window's words follow the
table's on the bus, and with ``F`` or more table bursts its first burst waits for the first
table burst's slot; whichever is later shifts the whole stream (:func:`table_delay`).

What the array waits for: the walk streams a window behind the loader. It reads only words
already written, and requests a K tile's weights once the K tile's channel plane is in.
The first kernel tap's K tiles need every plane, so of the first window what the bus takes
beyond those K tiles' compute is exposed (``first``, in ``Cost.dma``). While a tile
computes, the walk keeps ``ROUTE_DEPTH`` activation segments queued (per K tile one
scratchpad read per output row, plus a zero-point segment under a padded tap; its weight
reads queue apart), so ``ROUTE_DEPTH / segments`` K tiles; their weight reads hold read
slots until the banks take them, and the loader gets the slots they leave (plus
``Calibration.ws_loader_slots``, on average): none when the walk queues more K tiles than
there are reads in flight, since it then asks for a weight read whenever a slot frees and
has the read port first. What is left of a later window when its
tile begins streams as the first one does, a read latency after the loader asks
(``later``, in ``Cost.stall``). Weights kept in the weight buffer are read in the first M
tile only: then only the second window competes with weight reads (it goes out between them
once the walk's queue is full), and the first tile reads its weights at the reads in
flight's pace, which its K tiles may outrun.

The DRAM's pace (a DRAM slower than the bus, its bandwidth shared by reads and writes): every
bus word, padded vectors included, crosses at that bandwidth (a bound on the stream), and the
array itself keeps pace with it M tile by M tile (:func:`_paced`, in ``later``):

final K tiles
    the sums of an N tile's final K tile leave through the requantiser to the writer as the
    array makes them, so the tile runs no faster than its output words cross, and at half that
    while the next window's reads take turns with them, or the next N tile's record's where reads
    and writes share the DRAM (:meth:`_Pace.free`);
the next window
    its reads pass while the array runs the other K tiles; with the weights read again, the walk
    asks for every K tile's weights first and the loader gets one window command in between, so
    a K tile runs no faster than its weights and that command cross; with the weights in the
    weight buffer, a quantisation record blocks the read channel from N tile 1 on: the walk asks
    for the next N tile's record ``ROUTE_DEPTH / segments`` K tiles before the array ends this
    one, at most ``FLAG_DEPTH - 2`` (its flag queue holds the K tiles issued and not yet
    accumulated, the one the array runs and the one draining among them), and the weight feed
    takes its words only behind the weight segments before it, as K tile ``kt - 3`` retires
    (before that, the window's reads behind it wait; behind the system top's arbiter,
    ``acc.arbitrated``, the arbiter's buffer takes the ``F - 1`` bursts in flight behind the
    record, so the DRAM goes on for those). What of the window is left when the M tile ends, the
    array waits for (the walk asks for N tile 1's record only once the loader has asked for the
    whole window);
the weight banks, weights read again
    the walk's weight reads hold every read slot until the M tile's last K tile, so the next window
    waits behind them: what of the windows is exposed adds to the weight banks' time where that
    exceeds the array's (a K tile's weights load at the DRAM's pace once their bank is free; behind
    the system top's arbiter they wait in its read buffer, read while the bank was busy, and load a
    bus word a cycle);
the read channel's stalls
    with the weights read again and no arbiter, the read channel stalls while a K tile's weights wait
    for their bank, and the DRAM idles beyond its credit: each K tile holds the DRAM at least half a
    bank turn (in the shared bound, beside the records', windows' and writes' words);
the DRAM's credit
    the DRAM banks :data:`~mensa.contract.numeric.DRAM_CREDIT_WORDS` bus words of bandwidth while it
    idles (at a layer's start, and while the weight feed waits for a bank), which then cross at the
    bus's pace (:func:`dram_credit`); the layer's last output vector leaves after every read, in the
    fixed tail (``Calibration.dma_setup``), not in the shared bound.

``acc`` is a :class:`~mensa.model.cost.AcceleratorTable`, ``cal`` a
:class:`~mensa.model.cost.Calibration`; quantities are numpy arrays over the
``layers x accelerators`` grid, in cycles and bus words.
"""

from dataclasses import dataclass

import numpy as np

from mensa.contract.gemm import FLAG_DEPTH, ROUTE_DEPTH
from mensa.contract.numeric import ACC_BITS, DRAM_CREDIT_WORDS, READS_IN_FLIGHT, TABLE_ENTRIES
from mensa.model.bursts import SHORT_BURSTS, burst_chain, short_stream
from mensa.model.tiling import cdiv

__all__ = ["QUANT_RECORD_BYTES", "ws_stream", "table_delay", "dram_credit"]

#: Bytes of one output channel's quantisation record, read once per N tile: int32 bias,
#: int32 multiplier, int8 shift (mensa.contract.gemm_program packs them so).
QUANT_RECORD_BYTES = ACC_BITS // 8 + 4 + 1


def ws_stream(M, K, N, G, R, fit, spill, tiling, taps, busy, table, acc, cal):
    """Cycles of the read stream of a DMA-fed WS product, of its first window and of its later
    windows' exposed rest: ``(stream, first, later)`` (module docstring).

    ``G x R`` products ``M x K @ K x N``; ``fit``: the weights stay in the weight buffer after
    their first pass; ``spill``: the activations stream from DRAM; ``tiling``: the product's
    M tiles (:func:`mensa.model.tiling.ws_tiling`); ``taps``: K is walked as ``taps`` kernel
    taps; ``busy``: the array's cycles fed at full rate; ``table``: 1 with a table activation.
    """
    t = _traffic(K, N, G, R, fit, spill, tiling, taps, acc, cal)
    F = READS_IN_FLIGHT
    per_k_tile = burst_chain(t.w_words, 0.0, t.burst, t.held, t.cpw)     # a K tile's weights in flight
    windows = (t.win_words * t.cpw + np.maximum(t.win_bursts - F, 0) * t.held) / F
    w = _windows_left(t, K, G, taps, tiling, acc, cal)
    inflight = _reads_in_flight(t, M, R, spill, tiling, per_k_tile, windows, w, acc, cal)
    turn, tile = _bank_turn(t, M, G, R, acc, cal)
    bank = _weight_banks(t, turn, tile)
    first, boundary = _exposed(t, R, tiling, busy, per_k_tile, w, acc, cal)
    # On a DRAM slower than the bus, with the weights re-read, the walk's weight reads hold every read slot
    # until the M tile's last K tile, so its next window waits behind them: the later windows add to the
    # weight banks' time, not to the array's.
    slow = acc.mem_bpc < acc.word_bytes
    boundary = boundary + np.where(slow & (t.fw >= 1) & (t.mt > 1), np.maximum(bank - busy, 0), 0.0)
    boundary = np.maximum(boundary, _paced(t, G, R, spill, tiling, w, acc) - busy)
    # (the first tap's K tiles' weights, which the first window's exposed part counts, once)
    walk = _walk_lead(t, G, R, tiling, per_k_tile, acc) + np.maximum(
        first - np.where(t.fw >= 1, np.minimum(w.ct, w.per_m) * per_k_tile, 0.0), 0.0)
    # reads and writes share the DRAM: every bus word, padded vectors included, at its bandwidth
    written = np.where(spill, G * R * t.nt * M * cdiv(acc.cols, acc.word_bytes), 0.0)
    # (but the last output vector, which leaves after every read, in the fixed tail)
    last = np.where(spill, cdiv(acc.cols, acc.word_bytes), 0.0)
    shared = (t.words + np.maximum(written - last, 0)) * acc.word_bytes / acc.mem_bpc
    # (and with the weights read again, no arbiter's buffer: while a K tile's weights wait for their bank
    # the read channel stalls, and the DRAM idles beyond its credit for what of half a bank turn its
    # weight words do not fill)
    shared = shared + np.where(slow & ~acc.arbitrated & (t.fw >= 1),
                               t.slots * np.maximum(turn / 2 - t.w_words * t.cpw, 0), 0.0)
    live = M > 0
    shift = table * table_delay(acc, cal)
    stream = np.maximum(np.maximum(np.maximum(np.maximum(t.bus, inflight), bank), walk), shared) - dram_credit(acc)
    return (np.where(live, stream + shift, 0.0),
            np.where(live, first + shift, 0.0),
            np.where(live & spill, boundary, 0.0))


def dram_credit(acc):
    """Cycles a DRAM slower than the bus gives a stream that starts while it idles: the bandwidth
    it banked (:data:`DRAM_CREDIT_WORDS` bus words) moves at the bus's pace."""
    return DRAM_CREDIT_WORDS * np.maximum(acc.word_bytes / acc.mem_bpc - 1, 0)


def table_delay(acc, cal):
    """Cycles a table activation's table delays the first window's words: their bus words beyond the
    table command's lead, or, with ``F`` or more table bursts, the first table burst's words, hold
    and the window burst's own latency beyond that lead (it reuses that burst's slot)."""
    F = READS_IN_FLIGHT
    cpw = np.maximum(acc.word_bytes / np.maximum(acc.bpc, 1e-9), 1.0)
    words = cdiv(TABLE_ENTRIES, acc.word_bytes)
    bursts = cdiv(words, acc.max_burst)
    slot = acc.latency + cal.dram_turnaround + np.minimum(words, (bursts - F + 1) * acc.max_burst) * cpw
    return np.maximum(np.maximum(words * cpw, np.where(bursts >= F, slot, 0.0)) - cal.ws_table_lead, 0.0)


@dataclass
class _Traffic:
    """A WS product's read stream in bus words and bursts (``(L, A)`` arrays)."""
    burst: object         # beats of a full burst
    cpw: object           # cycles per bus word
    held: object          # cycles a burst holds its read slot beyond its beats
    kt: object            # K tiles of an N tile
    nt: object            # N tiles of a product
    mt: object            # M tiles of a product
    fw: object            # share of K tiles that read weights (1 when every pass re-reads them)
    tiles: object         # N tiles of all passes, one quantisation record each
    slots: object         # K tiles of all passes
    w_words: object       # words of a K tile's weights
    qw: object            # words of a quantisation record
    win_words: object     # words of every window
    win_bursts: object    # bursts of every window
    first_words: object   # words of the first window
    first_bursts: object  # bursts of the first window
    burst_words: object   # words of an average window burst
    words: object         # words of the whole stream
    bursts: object        # bursts of the whole stream
    bus: object           # cycles of the whole stream on the bus


def _traffic(K, N, G, R, fit, spill, tiling, taps, acc, cal):
    """The stream's words and bursts, per kind (:class:`_Traffic`)."""
    rows, cols, wb = acc.rows, acc.cols, acc.word_bytes
    burst = acc.max_burst
    cpw = np.maximum(wb / np.maximum(acc.bpc, 1e-9), 1.0)
    kt, nt = taps * cdiv(K / taps, rows), cdiv(N, cols)
    mt = tiling.tiles
    passes = mt * G * R
    fw = np.where(fit, 1 / np.maximum(passes, 1), 1.0)
    tiles = nt * passes
    slots = kt * tiles
    aw, w_words, qw = cdiv(rows, wb), rows * cdiv(cols, wb), cdiv(QUANT_RECORD_BYTES * cols, wb)
    # Every step reads its own windows. A command one word over a burst takes two bursts.
    commands = np.maximum(tiling.commands, 1) / np.maximum(mt, 1)      # of one window
    shorts = np.minimum(tiling.shorts, mt)
    win_words = np.where(spill, R * tiling.vectors * aw, 0.0)
    win_bursts = np.where(spill, R * commands * ((mt - shorts) * cdiv(tiling.run * aw, burst)
                                                 + shorts * cdiv(tiling.run_short * aw, burst)), 0.0)
    first_words = np.where(spill, tiling.first * aw, 0.0)
    first_bursts = np.where(spill, commands * cdiv(first_words / commands, burst), 0.0)
    words = tiles * qw + slots * fw * w_words + win_words
    return _Traffic(burst=burst, cpw=cpw, held=acc.latency + cal.dram_turnaround, kt=kt, nt=nt, mt=mt, fw=fw,
                    tiles=tiles, slots=slots, w_words=w_words, qw=qw, win_words=win_words, win_bursts=win_bursts,
                    first_words=first_words, first_bursts=first_bursts,
                    burst_words=np.maximum(win_words / np.maximum(win_bursts, 1), 1), words=words,
                    bursts=tiles * cdiv(qw, burst) + slots * fw * cdiv(w_words, burst) + win_bursts,
                    bus=words * cpw)


@dataclass
class _Left:
    """What of each window streams with its own M tile's K tiles (``(L, A)`` arrays)."""
    ct: object            # K tiles of the first kernel tap (one per channel tile of the window)
    per_m: object         # K tiles of an M tile
    ahead: object         # K tiles the walk keeps queued
    per_window: object    # words of a later window
    left: object          # of them, words the loader has not read when the tile begins


def _windows_left(t, K, G, taps, tiling, acc, cal):
    """The later windows' words left to stream with their tile (module docstring), and the
    quantities that fix them (:class:`_Left`)."""
    F = READS_IN_FLIGHT
    per_m = t.kt * t.nt * G                                     # K tiles of an M tile
    ct = np.maximum(cdiv(K / taps, acc.rows), 1)               # K tiles of the first tap
    ahead = ROUTE_DEPTH / np.maximum(tiling.segments, 1)        # K tiles the walk keeps queued
    free = np.clip(F + cal.ws_loader_slots - ahead, 0, F)       # read slots they leave the loader
    per_window = (t.win_words - t.first_words) / np.maximum(t.mt - 1, 1)
    during = np.maximum(per_m - ahead, 0) * free * t.burst_words
    left = np.maximum(per_window - during, 0)                   # words, and their bursts
    return _Left(ct=ct, per_m=per_m, ahead=ahead, per_window=per_window, left=left)


def _interleaved(t, w, R, spill, per_k_tile):
    """Cycles beyond the average bound of the windows streamed between their K tiles' weights.

    The walk asks for a K tile's weights only once its channel tile's plane is asked for, and
    has the read port first: a window the loader could not read ahead (the first, and what is
    left of a later one with the weights re-read) goes out plane, weights, plane, weights over
    the first tap's K tiles. Burst ``j`` reuses the slot of burst ``j - F``, so with a plane
    and a K tile's weights one burst each the weights reuse the weights' slots and the planes
    the planes': the stream runs at the slower chain's rate (:func:`burst_chain` of the
    pattern), not at the average of the two.
    """
    F = READS_IN_FLIGHT
    cpw, held, burst = t.cpw, t.held, t.burst

    def extra(words, k_tiles):
        a = cdiv(words, w.ct)                                   # a plane's words
        both = burst_chain(t.w_words, a, burst, held, cpw)
        alone = per_k_tile + (a * cpw + cdiv(a, burst) * held) / F
        return np.where((words > 0) & spill, k_tiles * np.maximum(both - alone, 0), 0.0)

    fw1 = t.fw >= 1
    k_first = np.minimum(w.ct, w.per_m)
    return R * (extra(t.first_words, k_first)
                + np.where(fw1, np.maximum(t.mt - 1, 0) * extra(w.left, k_first), 0.0))


def _reads_in_flight(t, M, R, spill, tiling, per_k_tile, windows, w, acc, cal):
    """The reads-in-flight bound with the loader's and the record order's (module docstring)."""
    F = READS_IN_FLIGHT
    cpw, held, qw = t.cpw, t.held, t.qw
    fw1 = t.fw >= 1
    inflight = np.where(fw1, t.tiles * qw * cpw + t.slots * per_k_tile + windows
                        + _interleaved(t, w, R, spill, per_k_tile),
                        (t.bus + np.maximum(t.bursts - F, 0) * held) / F)
    # the loader: per later window its drain's hold, and the next record's hold and words
    drain = np.maximum(t.mt * R - 1, 0) * (2 * held + qw * cpw)
    inflight = np.maximum(inflight, np.where(spill, windows + drain, 0.0))
    # record order: per N tile the last F K tiles' activations and the drain, beyond a hold
    k_px = np.maximum(tiling.pixels, 1.0)                      # cycles of a K tile's activations
    inflight = inflight + np.where(fw1 & spill, t.tiles * np.maximum(F * k_px + acc.rows + acc.cols
                                                                     + cal.ws_fill_extra - held, 0), 0.0)
    # A short layer never reaches the steady state (no slot is reused before its first bursts end).
    short = fw1 & (t.mt == 1) & (t.bursts <= SHORT_BURSTS) & (M > 0)
    if short.any():
        inflight = np.where(short, short_stream(short, 0.0, t.w_words, qw, t.kt, t.tiles, t.burst, held, cpw)
                            + windows, inflight)
    return inflight


def _walk_lead(t, G, R, tiling, per_k_tile, acc):
    """The walk's lead: with the weights re-read, M tile by M tile (full tiles and the short one
    apart, since a tile's slack does not carry to the next), K tiles of at least their activations,
    their weights' reads in flight, and the request-to-bank time of a K tile's weights over the K
    tiles the walk asks for them ahead.

    The walk asks for a K tile's weights only after queueing the activation segments of the K
    tiles before it, and its queue holds ``ROUTE_DEPTH`` of them: a K tile's weights are asked
    for about ``ROUTE_DEPTH / segments`` K tiles before the array reaches it, and take a read's
    hold, their words and the bank's ``rows`` load cycles to be in the array.
    """
    per_m = t.kt * t.nt * G                                     # K tiles of an M tile
    need = t.held + t.w_words * t.cpw + acc.rows                # request to the K tile's bank loaded
    short_segments = np.where(tiling.segments_short > 0, tiling.segments_short, tiling.segments)

    def k_time(pixels, segments):
        return np.maximum(np.maximum(pixels, need * segments / ROUTE_DEPTH), per_k_tile)

    shorts = np.minimum(tiling.shorts, t.mt)
    tiles = (t.mt - shorts) * k_time(tiling.pixels, tiling.segments) + shorts * k_time(tiling.short, short_segments)
    return np.where(t.fw >= 1, R * per_m * tiles, 0.0)


def _weight_banks(t, turn, tile):
    """The weight banks' bound: two K tiles per bank turnaround, an N tile's record beyond it. A K tile's
    weights load at the DRAM's pace, or, behind the system top's arbiter (``acc.arbitrated``), from its
    read buffer, which took them while the bank was busy, at a bus word a cycle (:func:`_bank_turn`)."""
    return t.fw * t.tiles * (t.kt * turn / 2 + np.maximum(t.qw * t.cpw + tile - turn / 2, 0))


def _bank_turn(t, M, G, R, acc, cal):
    """``(turn, tile)``: cycles from a K tile's last activation to the last of the K tile two after it,
    which loads its weights into the same bank, and of them a K tile's weight load and activations."""
    act_cycles = M * t.kt * t.nt * G * R                       # from the scratchpad: a vector per cycle
    retire = acc.rows + acc.cols - 1 + cal.ws_retire_extra
    load = np.where(acc.arbitrated, t.w_words, np.maximum(t.w_words * t.cpw - dram_credit(acc), 0))
    tile = load + act_cycles / np.maximum(t.slots, 1)
    return retire + tile, tile


@dataclass
class _Pace:
    """A WS product's M tile at the DRAM's pace (``(L, A)`` arrays)."""
    px: object            # pixels of a full M tile
    alone: object         # cycles a bus word, one channel moving
    both: object          # the same, reads and writes taking turns
    ow: object            # words of an output vector
    k_read: object        # cycles of a K tile whose weights cross from DRAM

    def final(self, pixels, rate):
        """Cycles of a final K tile: its output words leave as the array makes them."""
        return np.maximum(pixels, pixels * self.ow * rate)

    def free(self, t, pixels, from_dram):
        """Cycles of an N tile with no window to read: its final K tile's output words cross with the next
        N tile's quantisation record where reads and writes share the DRAM's bandwidth."""
        k = np.where(from_dram, np.maximum(pixels, t.w_words * self.alone), pixels)
        record = np.where(self.both > 1, t.qw, 0.0)
        return np.maximum(t.kt - 1, 0) * k + np.maximum(pixels, (pixels * self.ow + record) * self.alone)


def _paced(t, G, R, spill, tiling, w, acc):
    """The array's timeline at the DRAM's pace, M tile by M tile (module docstring: the DRAM's pace):
    every M tile but the last reads the next window, the last none; weights kept in the weight
    buffer are read in the first M tile, as when read again."""
    alone = t.cpw
    p = _Pace(px=tiling.pixels, alone=alone, both=np.maximum(2 * acc.word_bytes / acc.mem_bpc, 1.0),
              ow=cdiv(acc.cols, acc.word_bytes), k_read=np.maximum(tiling.pixels, t.w_words * alone))
    reread = t.fw >= 1
    again, kept = _read_again_tile(t, tiling, w, p), _kept_tile(t, w, p, acc)
    loading = np.where(reread, (t.mt - 1) * again, np.minimum(t.mt - 1, 1) * again + np.maximum(t.mt - 2, 0) * kept)
    single = reread | (t.mt <= 1)
    last = t.nt * np.where(tiling.shorts > 0, p.free(t, tiling.short, single), p.free(t, p.px, single))
    # (the first tap's K tiles' weights, which the first window's exposed part counts, once)
    counted = np.minimum(w.ct, w.per_m) * np.maximum(p.k_read - p.px, 0)
    return np.where(spill, G * R * (loading + last) - counted, 0.0)


def _read_again_tile(t, tiling, w, p):
    """An M tile reading its weights and the next window: the walk asks for every K tile's weights
    first, and the loader gets one window command in between, so a K tile runs no faster than
    its weights and that command cross."""
    commands = np.maximum(np.maximum(tiling.commands, 1) / np.maximum(t.mt, 1), 1)      # of a window
    command = w.per_window / commands
    mixed = np.minimum(commands, t.kt * t.nt)
    return (mixed * np.maximum(p.px, (t.w_words + command) * p.alone) + (t.kt * t.nt - mixed) * p.k_read
            + t.nt * (p.final(p.px, p.alone) - p.k_read))


def _kept_tile(t, w, p, acc):
    """An M tile with its weights in the weight buffer, reading the next window.

    The window's reads pass while the array runs the K tiles before each final one, and take
    turns with the final one's writes (which then run at half their rate). From N tile 1 on, a
    quantisation record blocks them: the walk asks for the next N tile's record ``ahead`` K tiles
    (at most ``FLAG_DEPTH - 2``) before the array ends this one, it reaches the head once the
    bursts in flight before it are in, and the weight feed takes it behind the weight segments
    before it, as K tile ``kt - 3`` retires. Behind the system top's arbiter the DRAM goes on
    meanwhile: the arbiter's buffer of the accelerator's read data takes the record and the
    ``F - 1`` window bursts in flight behind it. What is left of the window when the M tile ends,
    the array waits for (the walk asks for N tile 1's record only once the loader has asked for the
    whole window).
    """
    F = READS_IN_FLIGHT
    px, alone, both = p.px, p.alone, p.both
    others = np.maximum(t.kt - 1, 0) * px                           # the K tiles before the final one
    final = p.final(px, both)
    lead = np.minimum(w.ahead, FLAG_DEPTH - 2)
    asked = np.where(t.kt > lead, (t.kt - lead) * px + F * t.burst_words * alone, 0.0)
    blocked = np.clip(np.maximum(t.kt - 2, 0) * px - asked, 0, others)
    blocked = np.where(acc.arbitrated, np.maximum(blocked - (F - 1) * t.burst_words * alone, 0), blocked)
    first_n = others / alone + final / both                         # window words N tile 0 passes
    later_n = (others - blocked) / alone + final / both             # and each other one
    reads = w.per_window + t.nt * t.qw
    pending = np.where(reads <= first_n, reads / np.maximum(first_n, 1e-9),
                       1 + np.minimum(t.nt - 1, (reads - first_n) / np.maximum(later_n, 1e-9)))
    behind = np.maximum(reads - first_n - (t.nt - 1) * later_n, 0) * alone
    return pending * (others + final) + (t.nt - pending) * p.free(t, px, False) + behind


def _exposed(t, R, tiling, busy, per_k_tile, w, acc, cal):
    """``(first, later)``: cycles the array waits for the first window, and for the rest of the later
    windows when their tiles begin (module docstring)."""
    F = READS_IN_FLIGHT
    cpw, held, w_words, burst = t.cpw, t.held, t.w_words, t.burst
    per_m, ct, ahead, per_window, left = w.per_m, w.ct, w.ahead, w.per_window, w.left
    k_time = np.maximum(tiling.pixels, busy / np.maximum(per_m * t.mt * R, 1))    # cycles per K tile

    def streamed(words, bursts, weights=1.0, latency=0.0):
        # the first tap's K tiles wait for every plane and their weights; at least the first plane's
        lead = words + weights * ct * w_words
        lead_bursts = bursts + weights * ct * cdiv(w_words, burst)
        t_lead = np.maximum(lead * cpw, (lead * cpw + np.maximum(lead_bursts - F, 0) * held) / F)
        return np.where(words > 0, latency + np.maximum(t_lead - (ct - 1) * k_time,
                                                        (words / ct + weights * w_words) * cpw), 0.0)

    first = streamed(t.first_words, t.first_bursts)
    fw1 = t.fw >= 1
    later = streamed(left, left / t.burst_words, fw1, held)
    # Weights in the weight buffer: the second window's reads go out between the first tile's weight
    # reads once the walk's queue is full (a tile of more K tiles than its first tap's and the queue).
    second = np.where(per_m > ct + ahead, np.maximum(per_window * cpw - ahead * k_time, 0) + held, 0.0)
    first_tile = per_m * np.maximum(per_k_tile - k_time, 0)
    return first, R * np.where(fw1, (t.mt - 1) * later, np.minimum(t.mt - 1, 1) * (second + first_tile))
