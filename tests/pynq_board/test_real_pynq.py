"""The board runtime through the real pynq 3.0.1 package, over a simulated Ultra96.

``board_driver.py`` runs in ``.venv-pynq`` (Python 3.10 with ``pynq==3.0.1`` and the
PYNQ 3.0.1 image's pynqmetadata/pynqutils, made by ``make setup``); only the kernel's
edges are simulated (:mod:`simdevice`: ``/dev/mem``, the FPGA manager, XRT's buffers,
the UIO device), with the instruction simulator behind the registers. The ``.hwh`` is
written from the block design the Tcl dry run of ``bamboo.tcl`` recorded
(``bamboo.boards.hwh``) and parsed by PYNQ's own parser. Outputs are compared with
onnxruntime.
"""

import dataclasses
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from bamboo.arch.config import preset
from bamboo.boards.hwh import handoff
from bamboo.boards.platforms import board
from bamboo.boards.tcl import INTC_OFFSET
from bamboo.boards.vivado import build_root, check, generate
from board_standin import accelerator_factory
from isa_graphs import zoo_graph

ROOT = Path(__file__).resolve().parents[2]
PYNQ_PYTHON = ROOT / ".venv-pynq" / "bin" / "python"
HERE = Path(__file__).resolve().parent

pytestmark = pytest.mark.skipif(
    not (ROOT / ".venv-pynq" / ".setup-stamp").exists(),
    reason=".venv-pynq is missing (make setup makes it from "
    "requirements-pynq.txt with a Python 3.10)",
)


def _handoff(folder):
    """The ``.hwh`` of the Ultra96 block design (the board plumbing on the tiny array)."""
    b = board("ultra96")
    cfg = b.config()
    small = dataclasses.replace(
        preset("tiny"),
        axi_data_width=cfg.axi_data_width,
        axi_addr_width=cfg.axi_addr_width,
        clock_mhz=cfg.clock_mhz,
    )
    project = check(
        generate(
            "ultra96",
            config=small,
            accelerator=accelerator_factory(),
            folder=build_root() / "boards-test" / "ultra96-pynq",
        )
    )
    design = (project.folder / "dry_run_design.txt").read_text()
    (folder / "bamboo.hwh").write_text(handoff(design, project.verilog.read_text(), b, cfg))
    (folder / "design.json").write_text(
        json.dumps({"reg_base": b.reg_base, "intc_base": b.reg_base + INTC_OFFSET})
    )
    return b, cfg


@pytest.fixture(scope="module")
def board_run(tmp_path_factory):
    from bamboo.compiler.backend import compile_artifact

    folder = tmp_path_factory.mktemp("pynq_board")
    b, cfg = _handoff(folder)
    path, graph = zoo_graph("digits")
    (folder / "model.bmb").write_bytes(compile_artifact(graph, cfg))
    xs = np.random.default_rng(19).standard_normal((3, 1, 32, 32)).astype(np.float32)
    np.savez(folder / "inputs.npz", x=xs)
    out = subprocess.run(
        [str(PYNQ_PYTHON), str(HERE / "board_driver.py"), str(folder)],
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    report = json.loads((folder / "report.json").read_text())
    return b, cfg, path, xs, dict(np.load(folder / "outputs.npz")), report


def test_every_scenario_is_bit_exact_with_onnxruntime(board_run):
    import onnx
    from ortutil import run

    _, _, path, xs, outputs, _ = board_run
    model = onnx.load(str(path))
    refs = [run(model, x[None])[0] for x in xs]
    names = {k.rstrip("0123456789") for k in outputs}
    assert names == {"poll", "irq", "batch", "bare", "after_timeout"}
    for key, got in outputs.items():
        i = int(key[-1]) if key[-1].isdigit() else 0
        assert np.array_equal(got, refs[i]), key


def test_pynq_reads_the_handoff_of_our_block_design(board_run):
    b, _, _, _, _, report = board_run
    assert report["pynq"] == "3.0.1"
    bamboo = report["ip_dict"]["bamboo"]
    assert bamboo["phys_addr"] == b.reg_base and bamboo["interrupts"] == ["irq"]
    assert bamboo["type"] == "xilinx.com:module_ref:bamboo_top:1.0"
    assert report["ip_dict"]["intc"]["phys_addr"] == b.reg_base + INTC_OFFSET
    assert "bamboo/irq" in report["interrupt_pins"]
    assert report["interrupt_controllers"] == {"intc": {"parent": "", "index": 0, "raw_irq": 121}}


def test_clocks_and_port_widths(board_run):
    _, cfg, _, _, _, report = board_run
    # Overlay.download sets pl_clk0 from the .hwh's dividers before writing the bitstream;
    # the runtime does the same for a bare .bit. IOPLL 1499.985 MHz / 6.
    for key in ("overlay_clock_at_download", "bare_clock_at_download", "fclk0_mhz"):
        assert report[key] == pytest.approx(cfg.clock_mhz, rel=1e-4), key
    assert report["hp0_width_regs"] == [0, 0]  # S_AXI_HP0_FPD at 128 bits
    assert report["bare_hp0_width_regs"] == [0, 0]
    assert report["hpm0_width_field"] == 0  # M_AXI_HPM0_FPD at 32 bits


def test_cache_maintenance_interrupts_timeouts(board_run):
    _, _, _, xs, _, report = board_run
    assert report["stale_reads"] == 0
    assert report["flushes"] >= report["starts"] > 0 and report["invalidates"] >= len(xs)
    assert report["poll_uio_interrupts"] == 0
    # Every interrupt-mode run was woken by the UIO device at least once.
    assert report["irq_uio_interrupts"] >= report["irq_runs"]
    assert "soft-reset" in report["timeout"] and report["soft_resets"] == 1
    assert report["live_buffers_after_close"] == 0 and report["freed_after_close"] > 0
    assert set(report["refused"]) == {"allocate before a download", "unknown pin"}
