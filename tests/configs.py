"""Test configurations shared by the RTL tests of several directories.

``TINY_PACKED``: ``tiny`` with the packed array (two INT8 MACs per DSP48E2), two
depthwise channel blocks and two row groups, fewer post-processing lanes than columns
(4 lanes in 4 turns, 2 for a depthwise CONV's 8 channels, as ``ultra96``'s 8 lanes for 32
columns and 16 channels) and two ACC banks (a CONV's emit overlaps the next CONV's MACs),
as ``ultra96``.
tests/hw/test_top.py runs the compiled graphs on it in both simulators;
tests/sim/test_cycles.py checks the cycle model against its ``CYCLES`` counter. The same
watchdog gives both the same Verilog, so one Verilator build.
"""

import dataclasses

from bamboo.arch import preset
from bamboo.boards.calibrate import POINTS

TINY_PACKED = dataclasses.replace(
    preset("tiny"),
    name="tiny-packed",
    cols=16,
    dsp_packing=True,
    depthwise_blocks=2,
    depthwise_groups=2,
    postproc_lanes=4,
    acc_banks=2,
)
#: The ``ultra96`` preset until session 16 (``boards/calibrate.py``'s point
#: ``ultra96-8x32``): 8 x 32 packed, two depthwise channel blocks and row groups, a
#: post-processing lane per column, one ACC bank of 1024. The compiler's and the
#: simulators' tests of two channel blocks at full size run on it (the 16 x 32 preset has
#: one block).
X8X32 = POINTS["ultra96-8x32"]
#: The watchdog of the tests' Accelerator builds.
WATCHDOG = 4096
