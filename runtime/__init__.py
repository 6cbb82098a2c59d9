"""The Bamboo runtime: integer reference kernels and the inference session.

Runs on the board's ARM cores with numpy alone (PYNQ image: Python 3.10,
numpy 1.x): it imports ``bamboo.arch``, numpy and the standard library, and
finds simulator backends lazily.

The kernels here are the numeric contract: the fabric, the instruction
simulator and the CPU fallback must all reproduce them bit for bit, and the
tests compare them bit for bit with onnxruntime.
"""

from .conv import conv2d, conv2d_acc, conv_output_size, fully_connected, fully_connected_acc
from .elementwise import (
    add,
    concat,
    leaky_shift,
    lut_apply,
    mul_channel,
    requant_table,
    upsample_nearest2x,
)
from .errors import QuantizationError, RuntimeBambooError
from .pool import avg_pool, avg_pool_float, global_avg_pool, max_pool
from .quant import dequantize, quantize
from .requant import Requant, conv_scale, pool_scale, requantize
from .session import Session

__all__ = [
    "Requant",
    "requantize",
    "conv_scale",
    "pool_scale",
    "conv2d",
    "conv2d_acc",
    "conv_output_size",
    "fully_connected",
    "fully_connected_acc",
    "global_avg_pool",
    "avg_pool",
    "avg_pool_float",
    "max_pool",
    "add",
    "mul_channel",
    "concat",
    "requant_table",
    "upsample_nearest2x",
    "lut_apply",
    "leaky_shift",
    "quantize",
    "dequantize",
    "QuantizationError",
    "RuntimeBambooError",
    "Session",
]
