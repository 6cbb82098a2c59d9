"""Test configurations shared by the RTL tests of several directories.

``TINY_PACKED``: ``tiny`` with the packed array (two INT8 MACs per DSP48E2), two
depthwise channel blocks and two row groups as ``ultra96``, half as many post-processing
lanes as columns (8 lanes in 2 turns, as ``postproc_lanes`` 16 on ``ultra96``'s 32
columns) and two ACC banks (a CONV's emit overlaps the next CONV's MACs).
tests/hw/test_top.py runs the compiled graphs on it in both simulators;
tests/sim/test_cycles.py checks the cycle model against its ``CYCLES`` counter. The same
watchdog gives both the same Verilog, so one Verilator build.
"""

import dataclasses

from bamboo.arch import preset

TINY_PACKED = dataclasses.replace(
    preset("tiny"),
    name="tiny-packed",
    cols=16,
    dsp_packing=True,
    depthwise_blocks=2,
    depthwise_groups=2,
    postproc_lanes=8,
    acc_banks=2,
)
#: The watchdog of the tests' Accelerator builds.
WATCHDOG = 4096
