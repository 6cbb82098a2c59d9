"""Run the board runtime through the real pynq 3.0.1 over :mod:`simdevice` (in ``.venv-pynq``).

``python board_driver.py FOLDER``: FOLDER holds ``model.bmb``, ``bamboo.bit`` with its
``bamboo.hwh``, ``bare.bit`` (no handoff) and ``inputs.npz`` (``x``: a batch of inputs
of the model's one input). Writes ``outputs.npz`` (each scenario's outputs, compared
with onnxruntime by ``test_real_pynq.py``) and ``report.json`` (what PYNQ and the
simulated board saw). Each scenario is one Session through ``backend="board"``.
"""

import json
import sys
import warnings
from pathlib import Path

import numpy as np

warnings.simplefilter("ignore", DeprecationWarning)

import simdevice  # noqa: E402


def main(folder):
    folder = Path(folder)
    device = simdevice.install()
    import pynq
    from bamboo.arch.artifact import read_artifact
    from bamboo.arch.config import AcceleratorConfig
    from bamboo.runtime.device import DeviceTimeout
    from bamboo.runtime.session import Session

    xs = np.load(folder / "inputs.npz")["x"]
    model = folder / "model.bmb"
    report, outputs = {"pynq": pynq.__version__}, {}
    refused = {}
    try:
        pynq.allocate((16,), np.uint8)
    except RuntimeError as exc:
        refused["allocate before a download"] = str(exc)
    # The "bitstreams": the artifact's configuration, at the block design's addresses.
    place = json.loads((folder / "design.json").read_text())
    config = AcceleratorConfig.from_dict(read_artifact(model.read_bytes()).metadata.config)
    for bit in ("bamboo.bit", "bare.bit"):
        simdevice.write_bitstream(folder / bit, config, **place)

    def events(kind):
        return [d for k, d in device.log if k == kind]

    def run_all(sess, prefix):
        name = sess.get_inputs()[0].name
        for i, x in enumerate(xs):
            outputs[f"{prefix}{i}"] = sess.run(None, {name: x[None]})[0]

    # 1. Overlay (.bit + .hwh), completion by polling (the default).
    sess = Session(model, backend="board", bitstream=str(folder / "bamboo.bit"))
    ov = sess.device.overlay
    report["ip_dict"] = {
        k: {f: v.get(f) for f in ("phys_addr", "addr_range", "type")}
        | {"interrupts": sorted(v["interrupts"])}
        for k, v in ov.ip_dict.items()
    }
    report["interrupt_pins"] = sorted(ov.interrupt_pins)
    report["interrupt_controllers"] = ov.interrupt_controllers
    report["overlay_clock_at_download"] = events("download")[-1]
    report["fclk0_mhz"] = pynq.Clocks.fclk0_mhz
    report["hp0_width_regs"] = [int(device.mmap(a, 4)[0]) & 3 for a in (0xFD380000, 0xFD380014)]
    report["hpm0_width_field"] = int(device.mmap(0xFD615000, 4)[0]) >> 8 & 3
    run_all(sess, "poll")
    report["poll_uio_interrupts"] = device.uio.count
    report["flushes"], report["invalidates"] = len(events("flush")), len(events("invalidate"))
    report["starts"] = len(events("start"))
    sess.close()
    report["freed_after_close"] = len(events("free"))
    report["live_buffers_after_close"] = len(device.bos)

    # 2. Interrupts: one loop-owning thread; waits from this thread and run_batch's workers.
    # (Session.run from several user threads at once is the session's own concern.)
    sess = Session(model, backend="board", bitstream=str(folder / "bamboo.bit"), interrupt=True)
    device.engine.latency = 0.05  # each run ends after the wait has begun
    before = device.uio.count
    run_all(sess, "irq")
    name = sess.get_inputs()[0].name
    batch = sess.run_batch([{name: x[None]} for x in xs], pipeline=True)
    for i, out in enumerate(batch):
        outputs[f"batch{i}"] = out[0]
    report["irq_uio_interrupts"] = device.uio.count - before
    report["irq_runs"] = 2 * len(xs)

    # 3. A hang: the wait times out (through the interrupt), the engine is soft-reset,
    # and it runs again afterwards.
    sess.timeout = 0.2
    device.engine.latency = float("inf")
    resets = len(events("soft reset"))
    try:
        sess.run(None, {name: xs[0][None]})
        report["timeout"] = "no timeout"
    except DeviceTimeout as exc:
        report["timeout"] = str(exc)
    report["soft_resets"] = len(events("soft reset")) - resets
    device.engine.latency = 0.0
    sess.timeout = 10.0
    outputs["after_timeout"] = sess.run(None, {name: xs[0][None]})[0]
    sess.close()

    # 4. A bare .bit: the clock is set before the download, the port widths after.
    for addr in (0xFD380000, 0xFD380014):
        device.mmap(addr, 4)[0] = 2  # back to 32 bits
    sess = Session(model, backend="board", bitstream=str(folder / "bare.bit"))
    report["bare_clock_at_download"] = events("download")[-1]
    report["bare_hp0_width_regs"] = [
        int(device.mmap(a, 4)[0]) & 3 for a in (0xFD380000, 0xFD380014)
    ]
    run_all(sess, "bare")
    sess.close()
    report["stale_reads"] = len(events("stale read"))

    # 5. What the real library refuses.
    try:
        pynq.Interrupt("bamboo/intr")
    except ValueError as exc:
        refused["unknown pin"] = str(exc)
    report["refused"] = refused
    device.close()
    np.savez(folder / "outputs.npz", **outputs)
    (folder / "report.json").write_text(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main(sys.argv[1])
