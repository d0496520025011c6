"""A UART transmitter: bytes from a stream out on one line, 8 data bits, no parity, one stop bit (8N1).

:class:`UartTx` sends each byte of its ``data`` stream as a start bit (0), the eight data bits
least significant first and a stop bit (1), each bit ``divisor`` clock cycles long, so the baud
rate is the clock over ``divisor`` (:func:`uart_divisor`). The line idles high. A byte is taken
when the previous one's stop bit has been sent.
"""

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["UartTx", "uart_divisor"]


def uart_divisor(clock_hz, baud):
    """Clock cycles per bit for ``baud`` at ``clock_hz``; ValueError if the nearest divisor is off by
    more than 2% (a receiver samples each bit mid-way, and tolerates a few percent over a byte)."""
    if baud <= 0 or clock_hz <= 0:
        raise ValueError(f"clock and baud must be positive, not {clock_hz!r} and {baud!r}")
    divisor = round(clock_hz / baud)
    if divisor < 2 or abs(clock_hz / divisor - baud) > 0.02 * baud:
        raise ValueError(f"{baud} baud cannot be made from a {clock_hz / 1e6:g} MHz clock within 2%; "
                         f"allowed: at most {clock_hz / 2:.0f} baud, a divisor of 2 or more")
    return divisor


class UartTx(wiring.Component):
    """8N1 transmitter.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit (2 or more).

    Members
    -------
    data : ``In(stream.Signature(8))``
        The bytes to send.
    tx : ``Out(1)``
        The serial line, high when idle.
    """

    def __init__(self, divisor):
        if not isinstance(divisor, int) or divisor < 2:
            raise ValueError(f"divisor must be an integer of 2 or more, not {divisor!r}")
        self._divisor = divisor
        super().__init__({"data": In(stream.Signature(8)), "tx": Out(1, init=1)})

    def elaborate(self, platform):
        m = Module()
        shift = Signal(10, init=0x3FF)      # stop bit, 8 data bits, start bit: sent from bit 0
        bits = Signal(range(11))            # bits left to send of the current byte
        timer = Signal(range(self._divisor))
        m.d.comb += [self.tx.eq(shift[0]), self.data.ready.eq(bits == 0)]
        with m.If(self.data.valid & self.data.ready):
            m.d.sync += [shift.eq(Cat(Const(0, 1), self.data.payload, Const(1, 1))), bits.eq(10),
                         timer.eq(self._divisor - 1)]
        with m.Elif(bits != 0):
            with m.If(timer == 0):
                m.d.sync += [shift.eq(Cat(shift[1:], Const(1, 1))), bits.eq(bits - 1),
                             timer.eq(self._divisor - 1)]
            with m.Else():
                m.d.sync += timer.eq(timer - 1)
        return m
