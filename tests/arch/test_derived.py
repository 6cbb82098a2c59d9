"""Facts derived from the ISA tables in arch/, and no copies of them outside it."""

import pathlib
import re

import pytest
from bamboo.arch import PRESETS, AcceleratorConfig, ConfigError, isa
from bamboo.arch.layout import (
    BUFFERS,
    LUT_ENTRIES,
    PARAM_DEPTH,
    buffer_depth,
    elem_bytes,
    transfer_elem_bytes,
)

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_every_opcode_has_one_queue():
    assert set(isa.QUEUE_OF) == set(isa.FORMATS)
    assert set(isa.QUEUE_OF.values()) == set(isa.QUEUES)


def test_token_fifos_join_neighbouring_queues_both_ways():
    pairs = {(t.src, t.dst) for t in isa.TOKEN_FIFOS}
    assert pairs == {
        ("load", "compute"),
        ("compute", "load"),
        ("compute", "store"),
        ("store", "compute"),
    }
    assert [t.name for t in isa.TOKEN_FIFOS] == ["l2c", "c2l", "c2s", "s2c"]
    # The end queues have no neighbour on one side: no token bits towards it.
    assert set(isa.token_bits("load")) == {"push_next", "pop_next"}
    assert set(isa.token_bits("store")) == {"push_prev", "pop_prev"}
    assert set(isa.token_bits("compute")) == {f.name for f in isa.HEADER[1:]}
    for t in isa.TOKEN_FIFOS:
        # A FIFO pushed towards the next queue is popped from that queue's prev side.
        assert t.push.split("_")[1] != t.pop.split("_")[1]


def test_field_is_the_table_entry():
    f = isa.field(isa.Opcode.CONV, "lut_slot")
    assert (f.width, f.min, f.max) == (3, 0, 7)
    assert isa.field(isa.Opcode.LOAD, "opcode") is isa.HEADER[0]
    with pytest.raises(isa.IsaError, match="CONV has no field src_a"):
        isa.field(isa.Opcode.CONV, "src_a")
    with pytest.raises(isa.IsaError, match="illegal opcode 9"):
        isa.field(9, "opcode")


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_elem_bytes_match_the_buffer_words(name):
    c = PRESETS[name]
    assert [elem_bytes(c, b) for b in BUFFERS] == [c.rows, c.rows * c.cols, c.cols * 8, LUT_ENTRIES]
    assert [buffer_depth(c, b) for b in BUFFERS] == [
        c.input_buffer_depth,
        c.weight_buffer_depth,
        PARAM_DEPTH,
        c.lut_slots,
    ]
    store = isa.decode(isa.encode(isa.Opcode.STORE))
    assert transfer_elem_bytes(c, store) == c.rows
    load = isa.decode(isa.encode(isa.Opcode.LOAD, buffer=isa.Buffer.WGT))
    assert transfer_elem_bytes(c, load) == c.rows * c.cols


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_are_addressable(name):
    """Every preset's last buffer word and LUT slot encode."""
    c = PRESETS[name]
    isa.encode(
        isa.Opcode.CONV,
        lut_slot=c.lut_slots - 1,
        inp_addr=c.input_buffer_depth - 1,
        wgt_addr=c.weight_buffer_depth - 1,
        out_addr=c.output_buffer_depth - 1,
    )
    isa.encode(isa.Opcode.STORE, lane=c.cols // c.rows - 1, sram_addr=c.output_buffer_depth - 1)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"lut_slots": 16}, r"lut_slots must be at most 8 \(CONV.lut_slot is 3 bits\), not 16"),
        (
            {"input_buffer_depth": 1 << 17},
            r"input_buffer_depth must be at most 65536 \(LOAD.sram_addr is 16 bits\), not 131072",
        ),
        ({"weight_buffer_depth": 1 << 17}, r"weight_buffer_depth must be at most 65536"),
        ({"output_buffer_depth": 1 << 17}, r"output_buffer_depth must be at most 65536"),
        (
            {"rows": 2, "cols": 64},
            r"cols / rows must be at most 16 \(STORE.lane is 4 bits\), "
            r"not 32",
        ),
    ],
)
def test_config_the_isa_cannot_address_is_refused(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        AcceleratorConfig(**kwargs)


def test_config_at_the_field_limits_is_accepted():
    c = AcceleratorConfig(lut_slots=8, input_buffer_depth=1 << 16, rows=4, cols=64)
    isa.encode(isa.Opcode.CONV, lut_slot=c.lut_slots - 1, inp_addr=c.input_buffer_depth - 1)


# Restatements of arch facts that once lived outside arch/ (issue 17): none may come back.
_RESTATED = [
    (
        r"Buffer\.(INP|WGT|PARAM|LUT)\s*:\s*(\w+\.)?(rows|cols|R\b|C\b|\d|\w*_depth)",
        "a table of sizes by buffer (arch.layout.elem_bytes, buffer_depth)",
    ),
    (
        r"\(\s*(\w+\.)?Buffer\.(INP|WGT|PARAM|LUT)\s*,\s*(R\b|C\b|\d|\w+\.rows)",
        "a table of sizes by buffer (arch.layout.elem_bytes, buffer_depth)",
    ),
    (r"Opcode\.(LOAD|STORE|CONV|VEC|FINISH)\s*:\s*(\"|\d)", "a queue table (arch.isa.QUEUE_OF)"),
    (r"[\"'](l2c|c2l|c2s|s2c)[\"']", "a token FIFO name (arch.isa.TOKEN_FIFOS)"),
    (r"\b(1023|4095)\b|1 << (16|20)\b", "an ISA field limit (arch.isa.field(op, name).max)"),
    (r"min\([^)]*\b255\b", "an ISA field limit (arch.isa.field(op, name).max)"),
    (r"MAX_LUT_SLOTS\s*=\s*\d", "the LUT slots the ISA addresses (arch.isa.field)"),
    (r"cols \* 8\b|C \* 8\b", "PARAM word bytes (arch.layout.elem_bytes)"),
    (
        r"(>>|<<)\s*(np\.uint64\()?56\b|0xFFFFFF\)",
        "the PARAM lane layout (arch.layout.param_lane, unpack_param_lane)",
    ),
    (
        r"(\[[\"'](mode|vop|act|buffer)[\"']\]|\bvop)\s*(==|!=|in)\s*\(?\d",
        "a raw enum value (arch.isa.ConvMode, VecOp, Activation, Buffer)",
    ),
]
_RAW_ENUM = len(_RESTATED) - 1
_SCANNED = ["compiler/backend", "hw", "sim", "runtime"]
# The field-limit patterns are numbers that also mean other things (hw/top.py's watchdog is
# 1 << 20 cycles): they are looked for where the tiler and lowering size instructions.
_LIMITS_ONLY_IN = "compiler/backend"


def test_no_restated_facts_outside_arch():
    found = []
    for folder in _SCANNED + ["arch"]:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for n, line in enumerate(path.read_text().splitlines(), 1):
                code = line.split("#")[0]
                for k, (pattern, what) in enumerate(_RESTATED):
                    if "field limit" in what and folder != _LIMITS_ONLY_IN:
                        continue
                    if folder == "arch" and k != _RAW_ENUM:
                        continue  # arch/ is where the facts live
                    if re.search(pattern, code):
                        found.append(f"{path.relative_to(ROOT)}:{n}: {what}: {line.strip()}")
    assert not found, "\n".join(found)


@pytest.mark.parametrize(
    "source, pattern",
    [
        ("eb = {isa.Buffer.INP: c.rows}", 0),
        ("for buf, e in ((Buffer.INP, R),", 1),
        ('q = {Opcode.LOAD: "load"}', 2),
        ('tokens = {"l2c": 0}', 3),
        ("_OUT_MAX = 1023", 4),
        ("kc = min(ib, 255, d)", 5),
        ("MAX_LUT_SLOTS = 16", 6),
        ("eb = config.cols * 8", 7),
        ("e = ((w >> np.uint64(56)) & np.uint64(0xFF))", 8),
        ("mant = ((w >> np.uint64(32)) & np.uint64(0xFFFFFF)).astype(np.int64)", 8),
        ('if f["mode"] == 1:', 9),
        ("if vop in (1, 2):", 9),
    ],
)
def test_the_restatement_patterns_match(source, pattern):
    """Each pattern finds the restatement it was written for (as they stood in the code)."""
    assert re.search(_RESTATED[pattern][0], source)


def test_contract_map_names_real_places():
    """docs/contract.md, the map of where each fact lives: every file and test it names exists."""
    text = (ROOT / "docs" / "contract.md").read_text()
    names = re.findall(
        r"`((?:arch|hw|sim|runtime|compiler|boards|tests|docs)/[\w/.*]+)"
        r"(?:::(\w+))?`",
        text,
    )
    assert len(names) > 40, "the map names fewer places than it should"
    for path, test in names:
        files = list(ROOT.glob(path))
        assert files, f"docs/contract.md names {path}, which does not exist"
        if test:
            assert re.search(rf"^def {test}\(", files[0].read_text(), re.M), (
                f"docs/contract.md names {path}::{test}, which does not exist"
            )
