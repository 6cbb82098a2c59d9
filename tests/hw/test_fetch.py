"""hw/fetch.py's Dispatcher alone against the instruction simulator: every verdict (the
queue an instruction goes to, or the error it raises) is the simulator's, condition by
condition, on edge cases and on seeded random words."""

import numpy as np
import pytest
from amaranth.hdl import Module, ResetInserter, Signal
from amaranth.sim import Simulator
from bamboo.arch import PRESETS, isa
from bamboo.arch.isa import Activation, Buffer, ConvMode, Opcode, VecOp
from bamboo.arch.registers import ErrorCode
from bamboo.hw.fetch import Dispatcher
from bamboo.hw.queues import Fault
from bamboo.sim.isa import Machine
from bamboo.sim.isa_ops import Trap

CONFIG = PRESETS["tiny"]
WINDOW = 1 << 16  # DMA window bytes (window_base 0)
C = CONFIG


def _word(op, **fields):
    return isa.encode(op, **fields)


_LOAD = dict(buffer=Buffer.INP, y_size=2, x_size=3, x_stride=3)
_STORE = dict(y_size=2, x_size=3, x_stride=3)
_CONV = dict(
    kernel_h=1,
    kernel_w=1,
    stride_h=1,
    stride_w=1,
    dilation_h=1,
    dilation_w=1,
    out_h=2,
    out_w=2,
    in_w=2,
    in_blocks=1,
)
_VEC = dict(vop=VecOp.ADD, out_h=2, out_w=2, in_w=2, src_b=4)
_HIGH = 1 << (isa.INSN_BITS - 1)

#: (condition, instruction word): one legal word per opcode, then one word per check
#: of the Dispatcher, each breaking that condition alone.
EDGE = [
    ("load ok", _word(Opcode.LOAD, **_LOAD)),
    ("store ok", _word(Opcode.STORE, **_STORE)),
    ("conv ok", _word(Opcode.CONV, **_CONV)),
    ("vec ok", _word(Opcode.VEC, **_VEC)),
    ("vec barrier", _word(Opcode.VEC, vop=7, out_h=0, out_w=5)),
    ("finish ok", _word(Opcode.FINISH, irq=1)),
    ("illegal opcode 0", 0),
    ("illegal opcode 15", 15),
    ("bits above the last field", _word(Opcode.FINISH) | _HIGH),
    ("load pop_prev", _word(Opcode.LOAD, pop_prev=1, **_LOAD)),
    ("load push_prev", _word(Opcode.LOAD, push_prev=1, **_LOAD)),
    ("store pop_next", _word(Opcode.STORE, pop_next=1, **_STORE)),
    ("store push_next", _word(Opcode.STORE, push_next=1, **_STORE)),
    ("load zero rows", _word(Opcode.LOAD, **{**_LOAD, "y_size": 0})),
    ("store zero columns", _word(Opcode.STORE, **{**_STORE, "x_size": 0})),
    ("load past INP", _word(Opcode.LOAD, **{**_LOAD, "sram_addr": C.input_buffer_depth - 5})),
    (
        "load past WGT",
        _word(
            Opcode.LOAD, **{**_LOAD, "buffer": Buffer.WGT, "sram_addr": C.weight_buffer_depth - 5}
        ),
    ),
    ("load past PARAM", _word(Opcode.LOAD, **{**_LOAD, "buffer": Buffer.PARAM, "sram_addr": 11})),
    (
        "load past LUT",
        _word(
            Opcode.LOAD, buffer=Buffer.LUT, sram_addr=C.lut_slots, y_size=1, x_size=1, x_stride=1
        ),
    ),
    (
        "load padding past INP",
        _word(
            Opcode.LOAD,
            **{**_LOAD, "pad_top": 15, "pad_left": 15, "sram_addr": C.input_buffer_depth - 300},
        ),
    ),
    ("load outside the window", _word(Opcode.LOAD, **{**_LOAD, "dram_addr": WINDOW - 8})),
    ("load misaligned", _word(Opcode.LOAD, **{**_LOAD, "dram_addr": 1})),
    ("store lane", _word(Opcode.STORE, lane=C.cols // C.rows, **_STORE)),
    ("store past OUT", _word(Opcode.STORE, **{**_STORE, "sram_addr": C.output_buffer_depth - 5})),
    ("store outside the window", _word(Opcode.STORE, **{**_STORE, "dram_addr": WINDOW - 8})),
    ("conv kernel 0", _word(Opcode.CONV, **{**_CONV, "kernel_h": 0})),
    ("conv stride 0", _word(Opcode.CONV, **{**_CONV, "stride_w": 0})),
    ("conv dilation 0", _word(Opcode.CONV, **{**_CONV, "dilation_h": 0})),
    ("conv out 0", _word(Opcode.CONV, **{**_CONV, "out_w": 0})),
    ("conv in_blocks 0", _word(Opcode.CONV, **{**_CONV, "in_blocks": 0})),
    ("conv mode", _word(Opcode.CONV, **{**_CONV, "mode": 2})),
    ("conv past ACC", _word(Opcode.CONV, **{**_CONV, "out_h": 17, "out_w": 16, "in_w": 16})),
    (
        "depthwise kernel wider than rows",
        _word(
            Opcode.CONV, **{**_CONV, "mode": ConvMode.DEPTHWISE, "kernel_w": C.rows + 1, "in_w": 8}
        ),
    ),
    (
        "depthwise dilation_w",
        _word(Opcode.CONV, **{**_CONV, "mode": ConvMode.DEPTHWISE, "dilation_w": 2, "in_w": 4}),
    ),
    ("conv past WGT", _word(Opcode.CONV, **{**_CONV, "wgt_addr": C.weight_buffer_depth})),
    ("conv past INP", _word(Opcode.CONV, **{**_CONV, "inp_addr": C.input_buffer_depth - 3})),
    (
        "conv blocks past INP",
        _word(Opcode.CONV, **{**_CONV, "in_blocks": 3, "inp_block_stride": 600}),
    ),
    (
        "conv past OUT",
        _word(Opcode.CONV, **{**_CONV, "acc_emit": 1, "out_addr": C.output_buffer_depth - 3}),
    ),
    ("conv past PARAM", _word(Opcode.CONV, **{**_CONV, "acc_emit": 1, "param_addr": 16})),
    (
        "conv LUT slot",
        _word(
            Opcode.CONV, **{**_CONV, "acc_emit": 1, "act": Activation.LUT, "lut_slot": C.lut_slots}
        ),
    ),
    (
        "conv LUT slot unused without emit",
        _word(Opcode.CONV, **{**_CONV, "act": Activation.LUT, "lut_slot": C.lut_slots}),
    ),
    ("vec vop", _word(Opcode.VEC, **{**_VEC, "vop": 6})),
    ("vec past OUT", _word(Opcode.VEC, **{**_VEC, "out_addr": C.output_buffer_depth - 3})),
    (
        "vec pool window past INP",
        _word(
            Opcode.VEC,
            **{
                **_VEC,
                "vop": VecOp.MAX_POOL,
                "kernel_h": 3,
                "kernel_w": 3,
                "src_a": C.input_buffer_depth - 8,
            },
        ),
    ),
    (
        "vec a past INP",
        _word(Opcode.VEC, **{**_VEC, "vop": VecOp.COPY, "src_a": C.input_buffer_depth - 3}),
    ),
    ("vec b past INP", _word(Opcode.VEC, **{**_VEC, "src_b": C.input_buffer_depth - 3})),
    (
        "vec scale past INP",
        _word(Opcode.VEC, **{**_VEC, "vop": VecOp.MUL_CHANNEL, "src_b": C.input_buffer_depth}),
    ),
    (
        "vec past PARAM",
        _word(
            Opcode.VEC,
            **{**_VEC, "vop": VecOp.AVG_POOL, "kernel_h": 1, "kernel_w": 1, "param_addr": 16},
        ),
    ),
    (
        "vec max pool reads no PARAM",
        _word(
            Opcode.VEC,
            **{**_VEC, "vop": VecOp.MAX_POOL, "kernel_h": 1, "kernel_w": 1, "param_addr": 16},
        ),
    ),
    ("vec LUT slot", _word(Opcode.VEC, **{**_VEC, "act": Activation.LUT, "lut_slot": C.lut_slots})),
]
#: Checks that are the hardware's own (the simulator has no DMA alignment rule).
HARDWARE_ONLY = {"load misaligned": ErrorCode.MALFORMED_INSTRUCTION}


def _random_words(seed, n):
    """Words with every field drawn small (mostly legal), near a limit, or anywhere."""
    rng = np.random.default_rng(seed)
    words = []
    for _ in range(n):
        op = int(rng.choice(sorted(isa.FORMATS)))
        values = {}
        for f in isa.HEADER[1:] + isa.FORMATS[op]:
            kind = rng.integers(0, 8)
            hi = f.max if kind == 7 else min(f.max, (4, 16, 300)[min(kind, 6) // 3])
            values[f.name] = int(rng.integers(0, hi + 1))
        for bit in ("pop_prev", "pop_next", "push_prev", "push_next"):
            values[bit] = int(rng.random() < 0.1)
        if "dram_addr" in values:
            values["dram_addr"] = int(rng.integers(0, WINDOW // 256 + 2)) * 256
        words.append(isa.encode(op, **values))
    words += [int(rng.integers(0, 1 << 62)) << 194 | int(rng.integers(0, 16)) for _ in range(8)]
    return words


RANDOM = _random_words(17, 300)


def _simulator_verdict(word):
    """``("ok", queue)`` or ``("trap", ErrorCode)`` of the instruction simulator."""
    m = Machine(CONFIG, np.zeros(WINDOW, np.uint8))
    m.tokens = dict.fromkeys(m.tokens, 1 << 20)  # the dispatcher does not wait on tokens
    try:
        m.step(word)
    except Trap as trap:
        return ("trap", trap.args[0])
    return ("ok", isa.QUEUE_OF[word & 0xF])


def _dispatcher_verdicts(words):
    """The Dispatcher's verdict on each word, each from reset."""
    dut = Dispatcher(CONFIG, vector=True)
    m = Module()
    rst = Signal()
    m.submodules.dut = ResetInserter(rst)(dut)
    out = []
    queues = {"load": dut.o_load, "compute": dut.o_compute, "store": dut.o_store}

    async def bench(ctx):
        ctx.set(dut.window_size, WINDOW)
        for o in queues.values():
            ctx.set(o.ready, 1)
        for word in words:
            ctx.set(rst, 1)
            await ctx.tick()
            ctx.set(rst, 0)
            ctx.set(dut.go, 1)
            ctx.set(dut.insn_count, 1)
            await ctx.tick()
            ctx.set(dut.go, 0)
            ctx.set(dut.i_insn.payload, {"word": word, "index": 0, "fault": Fault.NONE})
            ctx.set(dut.i_insn.valid, 1)
            verdict = None
            for _ in range(12):
                if ctx.get(dut.error):
                    verdict = ("trap", ErrorCode(ctx.get(dut.error_code)))
                for name, o in queues.items():
                    if ctx.get(o.valid):
                        verdict = ("ok", name)
                if verdict:
                    break
                taken = ctx.get(dut.i_insn.valid) and ctx.get(dut.i_insn.ready)
                await ctx.tick()
                if taken:
                    ctx.set(dut.i_insn.valid, 0)
            out.append(verdict)

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return out


@pytest.fixture(scope="module")
def verdicts():
    words = [w for _, w in EDGE] + RANDOM
    return dict(zip(words, _dispatcher_verdicts(words)))


@pytest.mark.parametrize("condition, word", EDGE, ids=[c for c, _ in EDGE])
def test_edge_case_verdict_is_the_simulators(verdicts, condition, word):
    want = _simulator_verdict(word)
    if condition in HARDWARE_ONLY:
        assert want[0] == "ok"
        want = ("trap", HARDWARE_ONLY[condition])
    assert verdicts[word] == want, condition


def test_the_edge_cases_break_what_they_name():
    """Each edge case is refused by the simulator exactly when its name is not 'ok'."""
    for condition, word in EDGE:
        legal = _simulator_verdict(word)[0] == "ok"
        assert legal == (
            condition.endswith(" ok")
            or condition in HARDWARE_ONLY
            or condition
            in ("vec barrier", "conv LUT slot unused without emit", "vec max pool reads no PARAM")
        ), condition


def test_random_verdicts_are_the_simulators(verdicts):
    wrong = []
    for word in RANDOM:
        want, got = _simulator_verdict(word), verdicts[word]
        if want != got:
            wrong.append(f"{word:#x}: simulator {want}, dispatcher {got}")
    assert not wrong, "\n".join(wrong[:10])
    kinds = {_simulator_verdict(w) for w in RANDOM}
    # The draw reaches legal words of every queue and each kind of refusal.
    assert {("ok", "load"), ("ok", "compute"), ("ok", "store")} <= kinds
    assert {
        ("trap", c)
        for c in (
            ErrorCode.ILLEGAL_OPCODE,
            ErrorCode.MALFORMED_INSTRUCTION,
            ErrorCode.DMA_OUT_OF_WINDOW,
        )
    } <= kinds
