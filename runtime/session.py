"""The inference session: a ``.bmb`` artifact run on a device, fabric and CPU steps in turn.

Modelled on onnxruntime's ``InferenceSession``::

    sess = Session("mobilenet_v2.bmb", backend="isa")      # or "rtl", "board"
    name = sess.get_inputs()[0].name
    (logits,) = sess.run(None, {name: x})                  # float in, float out

The session loads the artifact (``bamboo.arch.artifact`` rejects corrupted or
inconsistent files and other ISA versions or configurations, before anything runs:
``bamboo.arch.metadata``), checks the device's ``ID``, ``ISA_VERSION``
and ``CONFIG_ID`` registers against it, copies the weights and the program into one
DDR buffer laid out as the artifact's memory plan (the DMA window), and then per run
walks the schedule of the METADATA section (``bamboo.runtime.schedule.walk``):

* a fabric step writes its input tensors into their exchange buffers (channel-blocked,
  ``bamboo.runtime.layout``), flushes, starts the engine at the step's instruction
  range, waits, invalidates and reads its output tensors back;
* a CPU step runs its nodes with ``bamboo.runtime.cpu_ops``.

Inputs are quantized and outputs dequantized as the model's QuantizeLinear and
DequantizeLinear do (``bamboo.runtime.quant``), unless ``raw=True``. Feeds are checked
as onnxruntime checks them: the declared shape exactly (no reshaping), a float input
takes real floating-point arrays, raw codes take integers within the code type.

A session is safe to share between threads, as onnxruntime's ``InferenceSession.run``
is: each run takes a DMA window copy (a context) of its own from a pool, which grows
to the number of runs in flight; the engine runs one fabric step at a time.

:meth:`Session.run_batch` (or ``pipeline=True``) runs frames two at a time, each with
its own copy of the DMA window, so one frame's CPU steps overlap the other's fabric
steps; the engine itself runs one step at a time, the older frame's first.
"""

import heapq
import importlib
import itertools
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from bamboo.arch.artifact import ArtifactCorruptError, ArtifactMismatchError, read_artifact
from bamboo.arch.config import AcceleratorConfig
from bamboo.arch.errors import BambooError
from bamboo.arch.isa import INSN_BYTES, ISA_VERSION
from bamboo.arch.metadata import DTYPES
from bamboo.arch.registers import MAGIC

from .cpu_ops import QInfo, decode_value, run_op
from .device import DeviceError, DeviceTimeout
from .errors import RuntimeBambooError
from .pool import mean_float
from .quant import dequantize, quantize
from .schedule import Port, walk

__all__ = ["BACKENDS", "NodeArg", "Session", "make_device"]

#: Backend name -> (module, Device class). Imported when asked for: the board has no sim.
BACKENDS = {
    "isa": ("bamboo.sim.isa_device", "IsaDevice"),
    "rtl": ("bamboo.sim.rtl_device", "RtlDevice"),
    "board": ("bamboo.runtime.board", "BoardDevice"),
}
_F32 = np.float32


@dataclass(frozen=True)
class NodeArg:
    """A model input or output as onnxruntime describes it: ``name``, ``shape``, ``type``."""

    name: str
    shape: list
    type: str


def make_device(backend, config, **options):
    """A :class:`~bamboo.runtime.device.Device` of ``backend`` for ``config``."""
    if backend not in BACKENDS:
        raise RuntimeBambooError(
            f"backend must be one of {', '.join(sorted(BACKENDS))}, not {backend!r}"
        )
    module, cls = BACKENDS[backend]
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise RuntimeBambooError(f"backend {backend!r} is unavailable: {exc}") from None
    try:
        return getattr(mod, cls)(config, **options)
    except TypeError as exc:
        raise RuntimeBambooError(
            f"backend {backend!r} does not take these options {sorted(options)}: {exc}"
        ) from None


class _Engine:
    """The engine, held by one fabric step at a time; waiting steps go oldest frame first.

    With a plain lock two frames in flight take turns at every segment and end up in
    step, both in their last CPU steps while the engine idles. Serving the oldest frame
    first lets it run as if alone, and the younger frame fills the engine's idle time
    (the older frame's CPU steps): the overlap the pipeline is for.
    """

    def __init__(self):
        self._cond = threading.Condition()
        self._busy = False
        self._waiting = []  # frame numbers, a heap

    def acquire(self, frame):
        with self._cond:
            heapq.heappush(self._waiting, frame)
            while self._busy or self._waiting[0] != frame:
                self._cond.wait()
            heapq.heappop(self._waiting)
            self._busy = True

    def release(self):
        with self._cond:
            self._busy = False
            self._cond.notify_all()


class _Context:
    """One copy of the DMA window in DDR: weights, activations, exchange, program."""

    def __init__(self, device, footprint, weights, w0, program, p0):
        self.buf = device.allocate(footprint)
        self.buf.write(w0, np.frombuffer(weights, np.uint8))
        self.buf.write(p0, np.frombuffer(program, np.uint8))
        self.buf.flush()
        self.base = self.buf.physical_address


class _Pool:
    """DMA window copies for runs in flight: each run takes one, returns it when done."""

    def __init__(self, make):
        self._make, self._lock = make, threading.Lock()
        self._free, self.all, self.closed = [], [], False

    def take(self):
        with self._lock:
            if self.closed:
                raise RuntimeBambooError("the session is closed: make a new Session to run")
            if self._free:
                return self._free.pop()
            ctx = self._make()  # under the lock: a device's allocator need not be thread-safe
            self.all.append(ctx)
            return ctx

    def give(self, ctx):
        with self._lock:
            if self.closed:
                ctx.buf.free()
            else:
                self._free.append(ctx)

    def close(self):
        """Free the idle copies; the ones in use are freed when their runs end."""
        with self._lock:
            self.closed = True
            idle, self._free = self._free, []
        for ctx in idle:
            ctx.buf.free()


class _Port(Port):
    """One run's context and the session's device, as the schedule walker's port."""

    def __init__(self, session, ctx, frame):
        self.s, self.ctx, self.frame = session, ctx, frame

    def write(self, k, step, blobs):
        start = time.perf_counter()
        for offset, blob in blobs:
            self.ctx.buf.write(offset, blob)
        self.ctx.buf.flush()
        self.s._count(
            "ps_to_pl", sum(b.size for _, b in blobs), time.perf_counter() - start, step=k
        )

    def execute(self, k, step):
        s, ctx = self.s, self.ctx
        insn_base = ctx.base + s._program_offset + step.insn_start * INSN_BYTES
        s._engine.acquire(self.frame)
        try:
            start = time.perf_counter()
            s.device.start(insn_base, step.insn_count, (ctx.base, ctx.buf.size))
            try:
                s.device.wait(s.timeout)
            except DeviceTimeout as exc:
                raise DeviceTimeout(exc.seconds, step.insn_start) from None
            except DeviceError as exc:
                raise s._located(exc, step) from None
            seconds = time.perf_counter() - start
            cycles = s.device.read_wide("CYCLES")
        finally:
            s._engine.release()
        s._count("segment", cycles, seconds, k)

    def read(self, k, step, spans):
        start = time.perf_counter()
        self.ctx.buf.invalidate()
        out = [self.ctx.buf.read(offset, n) for offset, n in spans]
        self.s._count("pl_to_ps", sum(n for _, n in spans), time.perf_counter() - start, step=k)
        return out


class Session:
    """Run a ``.bmb`` artifact.

    Parameters
    ----------
    path_or_bytes : str, Path or bytes
        The artifact.
    backend : {"isa", "rtl", "board"}
        Instruction simulator, RTL simulation, or the Ultra96 through PYNQ.
    config : AcceleratorConfig, optional
        The accelerator the artifact must be compiled for (default: the one its
        metadata names; the device's CONFIG_ID is checked either way).
    device : Device, optional
        Use this device instead of making one from ``backend``.
    timeout : float, optional
        Seconds a fabric step may take before the engine is soft-reset (default: the
        device's ``default_timeout``, 10 s on the board and the ISA simulator).
    pipeline : bool
        Make :meth:`run_batch` overlap frames (default True); :meth:`run` is unaffected.
    **backend_options
        Passed to the backend's Device (``bitstream=``, ``latency=``; on ``isa``,
        ``pace=`` emulates the fabric's time, see ``bamboo.sim.pacing``).

    Raises
    ------
    ArtifactError
        Corrupted, truncated, inconsistent or mismatched artifact, or a device built for
        another configuration or ISA version.
    RuntimeBambooError
        Arguments of the wrong kind, an unreadable file, an unavailable backend.
    """

    def __init__(
        self,
        path_or_bytes,
        backend="isa",
        config=None,
        *,
        device=None,
        timeout=None,
        pipeline=True,
        **backend_options,
    ):
        self._pool = None  # close() before the end of __init__ has nothing to free
        if isinstance(path_or_bytes, (str, Path)):
            try:
                data = Path(path_or_bytes).read_bytes()
            except OSError as exc:
                raise RuntimeBambooError(
                    f"cannot read artifact {path_or_bytes}: {exc.strerror or exc}"
                ) from None
        elif isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
            data = bytes(path_or_bytes)
        else:
            raise RuntimeBambooError(
                "Session takes a .bmb path (str or pathlib.Path) or the artifact's bytes, not "
                f"{type(path_or_bytes).__name__}"
            )
        if config is not None and not isinstance(config, AcceleratorConfig):
            raise RuntimeBambooError(
                "config must be an AcceleratorConfig (bamboo.arch.preset("
                f"name)) or None, not {type(config).__name__}"
            )
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0
        ):
            raise RuntimeBambooError(
                f"timeout must be a positive number of seconds, not {timeout!r}"
            )
        art = read_artifact(data, config_id=None if config is None else config.config_id)
        meta = art.metadata
        config = art.config if config is None else config
        self.config, self.artifact, self.meta, self.io = config, art, meta, art.ioquant
        try:
            self.nodes = {
                name: {
                    "op": n.op,
                    "inputs": n.inputs,
                    "outputs": n.outputs,
                    "attrs": {k: decode_value(v) for k, v in n.attrs.items()},
                }
                for name, n in meta.cpu_nodes.items()
            }
        except (BambooError, ValueError, TypeError, KeyError) as exc:
            raise ArtifactCorruptError(
                f"invalid artifact: a CPU node's attributes do not decode: {exc}"
            ) from None
        self.device = (
            device if device is not None else make_device(backend, config, **backend_options)
        )
        self.backend, self.pipeline = getattr(self.device, "name", backend), pipeline
        self.timeout = self.device.default_timeout if timeout is None else timeout
        try:
            self._check_device()
        except Exception:
            if device is None:
                self.device.close()
            raise
        mem = meta.memory
        self._image = (
            mem.footprint,
            art.weights,
            mem.region("weights")[0],
            art.program,
            mem.region("program")[0],
        )
        self._program_offset = mem.region("program")[0]
        self._engine = _Engine()
        self._frame_numbers = itertools.count()  # next() is atomic under the GIL
        self._stats_lock = threading.Lock()
        self.tensors = meta.tensors
        self.steps = meta.steps
        self._layers = sorted((ly.first, ly.count, ly.node) for ly in meta.layers)
        self.reset_stats()
        try:
            self._pool = _Pool(lambda: _Context(self.device, *self._image))
            self._pool.give(self._pool.take())  # one window copy ready for the first run
        except Exception:
            if device is None:
                self.device.close()
            raise

    # Set-up -------------------------------------------------------------------------------
    def _check_device(self):
        ident = self.device.identity()
        if ident["id"] != MAGIC:
            raise RuntimeBambooError(
                f"no Bamboo engine at the register base: ID reads {ident['id']:#010x}, "
                f"expected {MAGIC:#010x}"
            )
        if ident["isa_version"] != self.artifact.isa_version:
            raise ArtifactMismatchError(
                f"the {self.backend} engine runs ISA version {ident['isa_version']}, the "
                f"artifact was compiled for {self.artifact.isa_version}"
            )
        if ident["config_id"] != self.artifact.config_id:
            raise ArtifactMismatchError(
                f"the {self.backend} engine has config_id {ident['config_id']:#010x}, the "
                f"artifact was compiled for {self.artifact.config_id:#010x}: recompile for "
                "the loaded bitstream"
            )
        assert ISA_VERSION == self.artifact.isa_version

    def close(self):
        """Free the DDR buffers and release the device; later runs raise. Idempotent."""
        if self._pool is None or self._pool.closed:
            return
        self._pool.close()
        self.device.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # onnxruntime-like API ---------------------------------------------------------------
    @staticmethod
    def _arg(spec):
        kind = "float" if spec.float else spec.dtype
        return NodeArg(spec.name, list(spec.onnx_shape), f"tensor({kind})")

    def get_inputs(self):
        """The model's inputs (:class:`NodeArg`), in ONNX order."""
        return [self._arg(s) for s in self.io.inputs]

    def get_outputs(self):
        """The model's outputs (:class:`NodeArg`), in ONNX order."""
        return [self._arg(s) for s in self.io.outputs]

    def run(self, output_names=None, input_feed=None, *, raw=False):
        """Run one frame.

        Parameters
        ----------
        output_names : list of str or None
            Outputs to return (None: all, in ONNX order).
        input_feed : dict or array
            ``{input name: array}`` shaped as the ONNX input (one array for one input):
            float values (a real floating-point dtype), or integer codes within the code
            type when ``raw``.
        raw : bool
            Take and return quantized codes.

        Returns
        -------
        list of np.ndarray

        Safe to call from several threads at once (see the module docstring).
        """
        return self._frame(input_feed, output_names, raw, next(self._frame_numbers))

    def _frame(self, input_feed, output_names, raw, number):
        start = time.perf_counter()
        names = self._output_names(output_names)
        values = self._feed(input_feed, raw)
        ctx = self._pool.take()
        try:
            walk(self.meta, self.config.rows, values, _Port(self, ctx, number), self._cpu_step)
        finally:
            self._pool.give(ctx)
        outs = self._fetch(values, names, raw)
        self._count("frames", 1, time.perf_counter() - start)
        return outs

    def run_batch(self, feeds_list, output_names=None, *, raw=False, pipeline=None):
        """Run many frames; with ``pipeline`` two at a time (CPU of one, fabric of the other).

        Returns a list (per frame) of output lists.
        """
        pipeline = self.pipeline if pipeline is None else pipeline
        if isinstance(feeds_list, (dict, np.ndarray)) or not hasattr(feeds_list, "__iter__"):
            raise RuntimeBambooError(
                "run_batch takes a list of feeds (one per frame), not "
                f"{type(feeds_list).__name__}: use run() for one frame"
            )
        self._output_names(output_names)
        if not pipeline:
            return [self.run(output_names, f, raw=raw) for f in feeds_list]
        slots = threading.Semaphore(2)

        def frame(feed, number):
            try:
                return self._frame(feed, output_names, raw, number)
            finally:
                slots.release()

        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="bamboo-frame") as pool:
            futures = []
            for feed in feeds_list:
                slots.acquire()
                futures.append(pool.submit(frame, feed, next(self._frame_numbers)))
            return [f.result() for f in futures]

    # Statistics -------------------------------------------------------------------------
    def reset_stats(self):
        """Zero the transfer, segment and CPU counters."""
        seg = [
            {
                "step": k,
                "insn_start": s.insn_start,
                "insn_count": s.insn_count,
                "runs": 0,
                "seconds": 0.0,
                "cycles": 0,
                "in_bytes": 0,
                "out_bytes": 0,
            }
            for k, s in enumerate(self.steps)
            if s.on_fabric
        ]
        self._stats = {
            "backend": self.backend,
            "frames": 0,
            "frame_seconds": 0.0,
            "ps_to_pl": {"transfers": 0, "bytes": 0, "seconds": 0.0},
            "pl_to_ps": {"transfers": 0, "bytes": 0, "seconds": 0.0},
            "segments": {s["step"]: s for s in seg},
            "cpu": {},
            "cpu_nodes": {},
        }

    def _count(self, what, nbytes, seconds, key=None, step=None):
        with self._stats_lock:
            s = self._stats
            if step is not None:  # a transfer of fabric step ``step``
                s["segments"][step]["in_bytes" if what == "ps_to_pl" else "out_bytes"] += nbytes
            if what == "frames":
                s["frames"] += 1
                s["frame_seconds"] += seconds
            elif what == "segment":
                d = s["segments"][key]
                d["runs"] += 1
                d["seconds"] += seconds
                d["cycles"] += nbytes
            elif what == "cpu":
                name, op, k = key
                d = s["cpu"].setdefault(op, {"runs": 0, "seconds": 0.0})
                d["runs"] += 1
                d["seconds"] += seconds
                d = s["cpu_nodes"].setdefault(
                    name, {"op": op, "step": k, "runs": 0, "seconds": 0.0}
                )
                d["runs"] += 1
                d["seconds"] += seconds
            else:
                d = s[what]
                d["transfers"] += 1
                d["bytes"] += nbytes
                d["seconds"] += seconds

    def stats(self):
        """Counters since the last :meth:`reset_stats`.

        ``ps_to_pl`` / ``pl_to_ps``: transfers, bytes and seconds (blocking, copy and
        cache maintenance); ``segments``: per fabric step, runs, seconds from start to
        done, engine cycles (board/RTL; zero on the instruction simulator), bytes in and
        out; ``cpu``: per op, runs and seconds; ``cpu_nodes``: the same per node (with its
        ``op`` and schedule ``step``); ``frames`` and ``frame_seconds``: whole runs
        (overlapping ones when pipelined).
        """
        import copy

        with self._stats_lock:
            out = copy.deepcopy(self._stats)
        out["segments"] = list(out["segments"].values())
        for k in ("ps_to_pl", "pl_to_ps"):
            d = out[k]
            d["mb_per_s"] = d["bytes"] / d["seconds"] / 1e6 if d["seconds"] else 0.0
        out["fabric_seconds"] = sum(s["seconds"] for s in out["segments"])
        out["cpu_seconds"] = sum(d["seconds"] for d in out["cpu"].values())
        return out

    # Execution --------------------------------------------------------------------------
    def _output_names(self, output_names):
        specs = [s.name for s in self.io.outputs]
        if output_names is None:
            return specs
        if isinstance(output_names, (str, bytes)) or not isinstance(output_names, (list, tuple)):
            raise RuntimeBambooError(
                f"output_names must be a list of output names or None, "
                f"not {type(output_names).__name__}"
            )
        for name in output_names:
            if name not in specs:
                raise RuntimeBambooError(f"no output named {name!r}; outputs: {specs}")
        return list(output_names)

    def _feed(self, input_feed, raw):
        specs = self.io.inputs
        if not isinstance(input_feed, dict):
            if input_feed is None or len(specs) != 1:
                raise RuntimeBambooError(
                    f"feed a dict {{input name: array}} of the model's {len(specs)} input(s) "
                    f"{[s.name for s in specs]}"
                )
            input_feed = {specs[0].name: input_feed}
        unknown = set(input_feed) - {s.name for s in specs}
        if unknown:
            raise RuntimeBambooError(
                f"unknown inputs {sorted(map(str, unknown))}; the model "
                f"takes {[s.name for s in specs]}"
            )
        values = {}
        for s in specs:
            if s.name not in input_feed:
                raise RuntimeBambooError(f"no value fed for input {s.name!r}")
            x = self._check_input(s, input_feed[s.name], raw)
            dtype = np.dtype(s.dtype)
            if not raw and s.float:
                x = quantize(x, _F32(s.scale), s.zp, dtype)
            x = x.astype(dtype)
            if s.layout == "NHWC":
                x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
            values[s.tensor] = x
        return values

    @staticmethod
    def _check_input(s, x, raw):
        """``x`` as an array if it is what input ``s`` takes (as onnxruntime checks a feed)."""
        try:
            x = np.asarray(x)
        except (ValueError, TypeError) as exc:
            raise RuntimeBambooError(f"input {s.name!r} is not an array: {exc}") from None
        codes = raw or not s.float
        want = f"{s.dtype} codes" if codes else "tensor(float) (a float32 array)"
        if codes and (x.dtype.kind not in "iu"):
            raise RuntimeBambooError(
                f"input {s.name!r} is {x.dtype}, the model takes {want}"
                + (": pass raw=False for float values" if raw and s.float else "")
            )
        if not codes and x.dtype.kind != "f":
            raise RuntimeBambooError(
                f"input {s.name!r} is {x.dtype}, the model takes {want}: "
                "convert it with .astype(np.float32)"
            )
        if list(x.shape) != list(s.onnx_shape):
            raise RuntimeBambooError(
                f"input {s.name!r} has shape {list(x.shape)}, the model "
                f"takes {list(s.onnx_shape)} (no reshaping is done)"
            )
        if codes and x.size:
            lo, hi = DTYPES[s.dtype]
            if x.min() < lo or x.max() > hi:
                raise RuntimeBambooError(
                    f"input {s.name!r} has codes in [{x.min()}, {x.max()}],"
                    f" outside the {s.dtype} range [{lo}, {hi}]"
                )
        return x

    def _fetch(self, values, names, raw):
        specs = {s.name: s for s in self.io.outputs}
        outs = []
        for name in names:
            s = specs[name]
            y = values[s.tensor]
            if s.layout == "NHWC":
                y = np.ascontiguousarray(y.transpose(0, 3, 1, 2))
            if not raw and s.float:
                y = dequantize(y, _F32(s.scale), s.zp)
                if s.mean_axes:
                    y = mean_float(y, s.mean_axes).reshape(s.onnx_shape)
            outs.append(y)
        return outs

    def _q(self, name):
        t = self.tensors[name]
        return QInfo(t.dtype, t.scale, t.zp)

    def _cpu_step(self, k, step, values):
        for name in step.nodes:
            node = self.nodes[name]
            start = time.perf_counter()
            try:
                y = run_op(
                    node["op"],
                    node["attrs"],
                    [values[i] for i in node["inputs"]],
                    [self._q(i) for i in node["inputs"]],
                    self._q(node["outputs"][0]),
                )
            except BambooError:
                raise
            except (IndexError, KeyError, TypeError, ValueError, AttributeError) as exc:
                # Only an artifact whose CPU node does not fit its kernel gets here (the
                # loader checked everything else): name the node, no traceback.
                raise ArtifactCorruptError(
                    f"invalid artifact: CPU node {name!r} ({node['op']}) does not fit its "
                    f"kernel: {type(exc).__name__}: {exc}"
                ) from None
            out = node["outputs"][0]
            t = self.tensors[out]
            if list(y.shape) != list(t.shape) or y.dtype != np.dtype(t.dtype):
                raise RuntimeBambooError(
                    f"CPU node {name!r} ({node['op']}) produced "
                    f"{y.dtype}{list(y.shape)}, expected "
                    f"{t.dtype}{list(t.shape)}"
                )
            values[out] = y
            self._count("cpu", 0, time.perf_counter() - start, (name, node["op"], k))

    def _located(self, exc, step):
        index = step.insn_start + exc.index
        node = next(
            (name for first, count, name in self._layers if first <= index < first + count), None
        )
        where = f" (layer {node!r})" if node else ""
        return DeviceError(
            exc.code, index, f"instruction {index}{where}: engine error {exc.code.name}"
        )
