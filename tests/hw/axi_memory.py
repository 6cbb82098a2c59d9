"""A byte-array memory behind an AXI4 port, as amaranth.sim testbench processes.

:class:`AxiMemory` answers the read channels (AR, R) and the write channels (AW, W, B)
of a component's ``m_axi`` from a numpy ``uint8`` array at ``base``, with every ready
and valid random (``go`` = probability of offering a handshake), and checks the AXI
rules a bus would enforce: INCR bursts of full beats that stay in one 4 KiB page,
WLAST on a burst's last beat, write data only inside the array. Addresses in a page
listed in ``poison`` answer SLVERR (reads still return their beats, writes are dropped).
:func:`execute` runs one instruction on a LOAD or STORE unit.
"""

import numpy as np
from bamboo.arch import isa
from bamboo.arch.registers import ErrorCode

__all__ = ["AxiMemory", "execute"]

_OKAY, _SLVERR = 0, 2


class AxiMemory:
    def __init__(self, axi, mem, base, bus_bytes, *, seed=0, go=0.7, poison=()):
        self.axi, self.mem, self.base, self.bus = axi, mem, base, bus_bytes
        self.rng = np.random.default_rng(seed)
        self.go, self.poison = go, {p // 4096 for p in poison}

    def _offer(self):
        return int(self.rng.random() < self.go)

    def _check_burst(self, addr, length):
        assert addr % self.bus == 0, f"burst at {addr:#x} is not bus-aligned"
        end = addr + (length + 1) * self.bus - 1
        assert addr // 4096 == end // 4096, f"burst {addr:#x}+{length + 1} crosses 4 KiB"

    def _resp(self, addr):
        return _SLVERR if addr // 4096 in self.poison else _OKAY

    async def reader(self, ctx):
        """Process answering AR/R: bursts in order, one beat per handshake."""
        axi, bus = self.axi, self.bus
        bursts, beat = [], 0
        while True:
            ctx.set(axi.arready, self._offer())
            if bursts:
                addr = bursts[0][0] + beat * bus
                off = addr - self.base
                ctx.set(axi.rdata, int.from_bytes(self.mem[off : off + bus].tobytes(), "little"))
                ctx.set(axi.rresp, self._resp(addr))
                ctx.set(axi.rlast, int(beat == bursts[0][1]))
                ctx.set(axi.rvalid, self._offer())
            else:
                ctx.set(axi.rvalid, 0)
            _, _, arvalid, arready, araddr, arlen, rvalid, rready = await ctx.tick().sample(
                axi.arvalid, axi.arready, axi.araddr, axi.arlen, axi.rvalid, axi.rready
            )
            if rvalid and rready:
                beat += 1
                if beat > bursts[0][1]:
                    bursts.pop(0)
                    beat = 0
            if arvalid and arready:
                self._check_burst(araddr, arlen)
                bursts.append((araddr, arlen))

    async def writer(self, ctx):
        """Process answering AW/W/B: W may lead AW; B one cycle after a burst's WLAST at best."""
        axi, bus = self.axi, self.bus
        bursts, w_beats, beat, responses = [], [], 0, []
        while True:
            ctx.set(axi.awready, self._offer())
            ctx.set(axi.wready, self._offer())
            if responses:
                ctx.set(axi.bresp, responses[0])
                ctx.set(axi.bvalid, self._offer())
            else:
                ctx.set(axi.bvalid, 0)
            sampled = await ctx.tick().sample(
                axi.awvalid,
                axi.awready,
                axi.awaddr,
                axi.awlen,
                axi.wvalid,
                axi.wready,
                axi.wdata,
                axi.wstrb,
                axi.wlast,
                axi.bvalid,
                axi.bready,
            )
            (
                awvalid,
                awready,
                awaddr,
                awlen,
                wvalid,
                wready,
                wdata,
                wstrb,
                wlast,
                bvalid,
                bready,
            ) = sampled[2:]
            if bvalid and bready:
                responses.pop(0)
            if awvalid and awready:
                self._check_burst(awaddr, awlen)
                bursts.append([awaddr, awlen, _OKAY])
            if wvalid and wready:
                w_beats.append((wdata, wstrb, wlast))
            while w_beats and bursts:
                addr, length, resp = bursts[0]
                wdata, wstrb, wlast = w_beats.pop(0)
                at = addr + beat * bus
                assert wlast == (beat == length), f"WLAST {wlast} on beat {beat} of {length + 1}"
                if self._resp(at) == _OKAY:
                    data = wdata.to_bytes(bus, "little")
                    for i in range(bus):
                        if wstrb >> i & 1:
                            assert 0 <= at + i - self.base < self.mem.size, f"{at + i:#x}"
                            self.mem[at + i - self.base] = data[i]
                else:
                    bursts[0][2] = _SLVERR
                beat += 1
                if beat > length:
                    responses.append(bursts.pop(0)[2])
                    beat = 0


async def execute(ctx, unit, opcode, fields, limit=50_000):
    """Gives a LOAD/STORE unit one instruction; returns its verdict (an ErrorCode).

    Waits for ``done`` or ``error`` at most ``limit`` cycles (a unit that hangs fails).
    """
    ctx.set(unit.i_insn.payload, {"word": isa.encode(opcode, **fields), "index": 0, "fault": 0})
    ctx.set(unit.i_insn.valid, 1)
    await ctx.tick().until(unit.i_insn.ready)
    ctx.set(unit.i_insn.valid, 0)
    for _ in range(limit):
        _, _, done, error, code = await ctx.tick().sample(unit.done, unit.error, unit.error_code)
        if done or error:
            return ErrorCode.NONE if done else ErrorCode(code)
    raise AssertionError(f"no verdict {limit} cycles after {fields}")
