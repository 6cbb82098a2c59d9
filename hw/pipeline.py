"""Small helpers for pipelined datapaths, shared by the arithmetic units."""

from amaranth.hdl import Signal

__all__ = ["register", "delay_chain"]


def register(m, value, name, shape=None):
    """A register following ``value``; datapath registers have no reset (SRL/DSP friendly)."""
    reg = Signal(value.shape() if shape is None else shape, name=name, reset_less=True)
    m.d.sync += reg.eq(value)
    return reg


def delay_chain(m, signal, stages, prefix="valid"):
    """``[signal, signal delayed 1, ..., delayed stages]``: a control bit (with reset)
    travelling alongside a pipeline, one register per stage named ``{prefix}{n}``."""
    chain = [signal]
    for n in range(stages):
        v = Signal(name=f"{prefix}{n + 1}")
        m.d.sync += v.eq(chain[-1])
        chain.append(v)
    return chain
