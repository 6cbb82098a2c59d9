# amaranth: UnusedElaboratable=no
"""The cocotb harness: simulator discovery, Verilog generation, builds and failures.

The probe design has a comb output from an FSM that never changes state: in Icarus
it would read X without the harness's ``always_comb`` rewrite (amaranth-lang/amaranth#594).
"""

from pathlib import Path

import pytest
from amaranth.hdl import Module, signed, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out
from bamboo.sim.harness import (
    SIMULATORS,
    SimulationError,
    find_simulators,
    generate_verilog,
    run_cocotb,
)
from bamboo.sim.tools import pack, unpack

COCOTB_MODULE = Path(__file__).with_name("cocotb_harness.py")


class Probe(wiring.Component):
    count: Out(8)
    flag: Out(1)

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.count.eq(self.count + 1)
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.flag.eq(1)
                with m.If(self.count == 200):
                    m.next = "BUSY"
            with m.State("BUSY"):
                m.d.comb += self.flag.eq(0)
        return m


class Free(wiring.Component):
    """A stream without back-pressure: its ``ready`` is a constant, not a port."""

    i: In(stream.Signature(8, always_ready=True))
    o: Out(stream.Signature(8, always_ready=True))

    def elaborate(self, platform):
        m = Module()
        m.d.sync += [self.o.valid.eq(self.i.valid), self.o.payload.eq(self.i.payload + 1)]
        return m


class Kind(enum.Enum, shape=2):
    A = 0
    B = 3


class Item(data.Struct):
    x: signed(5)
    kind: Kind
    y: unsigned(3)


def test_discovery_reports_every_simulator():
    sims = find_simulators()
    assert tuple(sims) == SIMULATORS
    for name, info in sims.items():
        assert info.name == name and info.reason
        if info.available:
            assert info.version


@pytest.mark.parametrize(
    "shape, value",
    [
        (Item, {"x": -3, "kind": Kind.B, "y": 5}),
        (data.ArrayLayout(Item, 3), [{"x": 15}, {"x": -16, "kind": Kind.B}, {"y": 7}]),
    ],
)
def test_pack_matches_amaranth(shape, value):
    bits = pack(shape, value)
    assert bits == data.Layout.cast(shape).const(value).as_value().value
    assert pack(shape, unpack(shape, bits)) == bits


def test_pack_plain_shapes():
    assert pack(signed(7), -1) == 0x7F
    assert unpack(signed(7), 0x7F) == -1
    assert unpack(unsigned(7), 0x7F) == 127


def test_pack_rejects_unknown_fields():
    with pytest.raises(ValueError, match=r"unknown fields \['z'\]"):
        pack(Item, {"z": 1})


def test_verilog_is_cached_and_skips_constant_ports():
    first = generate_verilog(Free(), "free")
    assert generate_verilog(Free(), "free") == first
    text = first.read_text()
    assert "i__payload" in text and "i__ready" not in text
    assert generate_verilog(Probe(), "free") != first
    with pytest.raises(ValueError, match="module name must be a Verilog identifier, not 'a-b'"):
        generate_verilog(Free(), "a-b")


def test_unknown_simulator():
    with pytest.raises(ValueError, match="simulator must be one of verilator, icarus, not 'xsim'"):
        run_cocotb(Probe(), COCOTB_MODULE, "xsim", name="probe")


@pytest.mark.sim
def test_builds_once_and_reports_failures(simulator):
    result = run_cocotb(Probe(), COCOTB_MODULE, simulator, name="probe")
    assert result.tests == 2  # one skipped
    again = run_cocotb(Probe(), COCOTB_MODULE, simulator, name="probe")
    assert not again.built and again.build_dir == result.build_dir
    with pytest.raises(
        SimulationError,
        match=r"(?s)1 of 2 cocotb tests failed on "
        + simulator
        + r".*fails_on_purpose: this test fails on purpose",
    ):
        run_cocotb(Probe(), COCOTB_MODULE, simulator, name="probe", extra_env={"HARNESS_FAIL": "1"})
