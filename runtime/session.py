"""The inference session: a ``.bmb`` artifact run on a device, fabric and CPU steps in turn.

Modelled on onnxruntime's ``InferenceSession``::

    sess = Session("mobilenet_v2.bmb", backend="isa")      # or "rtl", "board"
    name = sess.get_inputs()[0].name
    (logits,) = sess.run(None, {name: x})                  # float in, float out

The session loads the artifact (``bamboo.arch.artifact`` rejects corrupted files and
other ISA versions or configurations), checks the device's ``ID``, ``ISA_VERSION``
and ``CONFIG_ID`` registers against it, copies the weights and the program into one
DDR buffer laid out as the artifact's memory plan (the DMA window), and then per run
walks the schedule of the METADATA section:

* a fabric step writes its input tensors into their exchange buffers (channel-blocked,
  ``bamboo.runtime.layout``), flushes, starts the engine at the step's instruction
  range, waits, invalidates and reads its output tensors back;
* a CPU step runs its nodes with ``bamboo.runtime.cpu_ops``.

Inputs are quantized and outputs dequantized as the model's QuantizeLinear and
DequantizeLinear do (``bamboo.runtime.quant``), unless ``raw=True``.

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
from bamboo.arch.artifact import ArtifactMismatchError, read_artifact
from bamboo.arch.config import AcceleratorConfig
from bamboo.arch.isa import INSN_BYTES, ISA_VERSION
from bamboo.arch.registers import MAGIC

from .cpu_ops import QInfo, decode_value, run_op
from .device import DeviceError, DeviceTimeout
from .errors import RuntimeBambooError
from .layout import from_blocked, to_blocked
from .quant import dequantize, quantize

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
            f"backend must be one of {', '.join(sorted(BACKENDS))}, not {backend!r}")
    module, cls = BACKENDS[backend]
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise RuntimeBambooError(f"backend {backend!r} is unavailable: {exc}") from None
    return getattr(mod, cls)(config, **options)


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
        self._waiting = []          # frame numbers, a heap

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
        self.on_device = set()   # tensors whose DDR copy is current


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
        Corrupted, truncated or mismatched artifact, or a device built for another
        configuration or ISA version.
    """

    def __init__(self, path_or_bytes, backend="isa", config=None, *, device=None,
                 timeout=None, pipeline=True, **backend_options):
        if isinstance(path_or_bytes, (str, Path)):
            try:
                data = Path(path_or_bytes).read_bytes()
            except OSError as exc:
                raise RuntimeBambooError(f"cannot read artifact: {exc}") from None
        else:
            data = bytes(path_or_bytes)
        art = read_artifact(data, config_id=None if config is None else config.config_id)
        meta = art.metadata
        if config is None:
            config = AcceleratorConfig.from_dict(meta["config"])
            if config.config_id != art.config_id:
                raise ArtifactMismatchError(
                    f"artifact header config_id {art.config_id:#010x} does not match its "
                    f"metadata's configuration {config.config_id:#010x}")
        self.config, self.artifact, self.meta, self.io = config, art, meta, art.ioquant
        self.device = device if device is not None else make_device(backend, config,
                                                                   **backend_options)
        self.backend, self.pipeline = getattr(self.device, "name", backend), pipeline
        self.timeout = self.device.default_timeout if timeout is None else timeout
        try:
            self._check_device()
        except Exception:
            if device is None:
                self.device.close()
            raise
        regions = meta["memory"]["regions"]
        self._image = (meta["memory"]["footprint"], art.weights, regions["weights"][0],
                       art.program, regions["program"][0])
        self._program_offset = regions["program"][0]
        self._contexts = [self._new_context()]
        self._engine = _Engine()
        self._frame_numbers = itertools.count()     # next() is atomic under the GIL
        self._stats_lock = threading.Lock()
        self.tensors = meta["tensors"]
        self.nodes = {name: {**n, "attrs": {k: decode_value(v) for k, v in n["attrs"].items()}}
                      for name, n in meta["cpu_nodes"].items()}
        self.steps = meta["steps"]
        self._layers = sorted((ly["first"], ly["count"], ly["node"]) for ly in meta["layers"])
        self.reset_stats()

    # Set-up -------------------------------------------------------------------------------
    def _check_device(self):
        ident = self.device.identity()
        if ident["id"] != MAGIC:
            raise RuntimeBambooError(
                f"no Bamboo engine at the register base: ID reads {ident['id']:#010x}, "
                f"expected {MAGIC:#010x}")
        if ident["isa_version"] != self.artifact.isa_version:
            raise ArtifactMismatchError(
                f"the {self.backend} engine runs ISA version {ident['isa_version']}, the "
                f"artifact was compiled for {self.artifact.isa_version}")
        if ident["config_id"] != self.artifact.config_id:
            raise ArtifactMismatchError(
                f"the {self.backend} engine has config_id {ident['config_id']:#010x}, the "
                f"artifact was compiled for {self.artifact.config_id:#010x}: recompile for "
                "the loaded bitstream")
        assert ISA_VERSION == self.artifact.isa_version

    def _new_context(self):
        return _Context(self.device, *self._image)

    def close(self):
        """Free the DDR buffers and release the device."""
        for ctx in self._contexts:
            ctx.buf.free()
        self._contexts = []
        self.device.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # onnxruntime-like API ---------------------------------------------------------------
    @staticmethod
    def _arg(spec):
        kind = "float" if spec["float"] else spec["dtype"]
        return NodeArg(spec["name"], list(spec["onnx_shape"]), f"tensor({kind})")

    def get_inputs(self):
        """The model's inputs (:class:`NodeArg`), in ONNX order."""
        return [self._arg(s) for s in self.io["inputs"]]

    def get_outputs(self):
        """The model's outputs (:class:`NodeArg`), in ONNX order."""
        return [self._arg(s) for s in self.io["outputs"]]

    def run(self, output_names=None, input_feed=None, *, raw=False):
        """Run one frame.

        Parameters
        ----------
        output_names : list of str or None
            Outputs to return (None: all, in ONNX order).
        input_feed : dict or array
            ``{input name: array}`` shaped as the ONNX input (one array for one input):
            float values, or codes when ``raw``.
        raw : bool
            Take and return quantized codes.

        Returns
        -------
        list of np.ndarray
        """
        start = time.perf_counter()
        values = self._feed(input_feed, raw)
        self._execute(values, self._contexts[0], next(self._frame_numbers))
        outs = self._fetch(values, output_names, raw)
        self._count("frames", 1, time.perf_counter() - start)
        return outs

    def run_batch(self, feeds_list, output_names=None, *, raw=False, pipeline=None):
        """Run many frames; with ``pipeline`` two at a time (CPU of one, fabric of the other).

        Returns a list (per frame) of output lists.
        """
        pipeline = self.pipeline if pipeline is None else pipeline
        if not pipeline:
            return [self.run(output_names, f, raw=raw) for f in feeds_list]
        while len(self._contexts) < 2:
            self._contexts.append(self._new_context())
        free = list(self._contexts[:2])
        slots = threading.Semaphore(2)
        lock = threading.Lock()

        def frame(feed, number):
            start = time.perf_counter()
            with lock:
                ctx = free.pop()
            try:
                values = self._feed(feed, raw)
                self._execute(values, ctx, number)
                return self._fetch(values, output_names, raw)
            finally:
                with lock:
                    free.append(ctx)
                slots.release()
                self._count("frames", 1, time.perf_counter() - start)

        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="bamboo-frame") as pool:
            futures = []
            for feed in feeds_list:
                slots.acquire()
                futures.append(pool.submit(frame, feed, next(self._frame_numbers)))
            return [f.result() for f in futures]

    # Statistics -------------------------------------------------------------------------
    def reset_stats(self):
        """Zero the transfer, segment and CPU counters."""
        seg = [{"step": k, "insn_start": s["insn_start"], "insn_count": s["insn_count"],
                "runs": 0, "seconds": 0.0, "cycles": 0, "in_bytes": 0, "out_bytes": 0}
               for k, s in enumerate(self.steps) if s["target"] == "fabric"]
        self._stats = {
            "backend": self.backend, "frames": 0, "frame_seconds": 0.0,
            "ps_to_pl": {"transfers": 0, "bytes": 0, "seconds": 0.0},
            "pl_to_ps": {"transfers": 0, "bytes": 0, "seconds": 0.0},
            "segments": {s["step"]: s for s in seg},
            "cpu": {},
            "cpu_nodes": {},
        }

    def _count(self, what, nbytes, seconds, key=None, step=None):
        with self._stats_lock:
            s = self._stats
            if step is not None:     # a transfer of fabric step ``step``
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
                d = s["cpu_nodes"].setdefault(name, {"op": op, "step": k, "runs": 0,
                                                     "seconds": 0.0})
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
    def _feed(self, input_feed, raw):
        specs = self.io["inputs"]
        if not isinstance(input_feed, dict):
            if len(specs) != 1:
                raise RuntimeBambooError(f"the model has {len(specs)} inputs: feed a dict")
            input_feed = {specs[0]["name"]: input_feed}
        unknown = set(input_feed) - {s["name"] for s in specs}
        if unknown:
            raise RuntimeBambooError(f"unknown inputs {sorted(unknown)}; the model takes "
                                     f"{[s['name'] for s in specs]}")
        values = {}
        for s in specs:
            if s["name"] not in input_feed:
                raise RuntimeBambooError(f"no value fed for input {s['name']!r}")
            x = np.asarray(input_feed[s["name"]])
            if list(x.shape) != list(s["onnx_shape"]):
                raise RuntimeBambooError(f"input {s['name']!r} has shape {list(x.shape)}, the "
                                         f"model takes {s['onnx_shape']}")
            dtype = np.dtype(s["dtype"])
            if not raw and s["float"]:
                x = quantize(x, _F32(s["scale"]), s["zp"], dtype)
            x = x.astype(dtype)
            if s["layout"] == "NHWC":
                x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
            values[s["tensor"]] = x
        return values

    def _fetch(self, values, output_names, raw):
        specs = {s["name"]: s for s in self.io["outputs"]}
        names = list(specs) if output_names is None else list(output_names)
        outs = []
        for name in names:
            if name not in specs:
                raise RuntimeBambooError(f"no output named {name!r}; outputs: {list(specs)}")
            s = specs[name]
            y = values[s["tensor"]]
            if s["layout"] == "NHWC":
                y = np.ascontiguousarray(y.transpose(0, 3, 1, 2))
            if not raw and s["float"]:
                y = dequantize(y, _F32(s["scale"]), s["zp"])
            outs.append(y)
        return outs

    def _execute(self, values, ctx, frame):
        ctx.on_device = set()
        for k, step in enumerate(self.steps):
            if step["target"] == "cpu":
                self._cpu_step(k, step, values)
            else:
                self._fabric_step(k, step, values, ctx, frame)

    def _q(self, name):
        t = self.tensors[name]
        return QInfo(t["dtype"], t["scale"], t["zp"])

    def _cpu_step(self, k, step, values):
        for name in step["nodes"]:
            node = self.nodes[name]
            start = time.perf_counter()
            y = run_op(node["op"], node["attrs"], [values[i] for i in node["inputs"]],
                       [self._q(i) for i in node["inputs"]], self._q(node["outputs"][0]))
            out = node["outputs"][0]
            t = self.tensors[out]
            if list(y.shape) != list(t["shape"]) or y.dtype != np.dtype(t["dtype"]):
                raise RuntimeBambooError(f"CPU node {name!r} ({node['op']}) produced "
                                         f"{y.dtype}{list(y.shape)}, expected "
                                         f"{t['dtype']}{t['shape']}")
            values[out] = y
            self._count("cpu", 0, time.perf_counter() - start, (name, node["op"], k))

    def _fabric_step(self, k, step, values, ctx, frame):
        rows = self.config.rows
        start = time.perf_counter()
        nbytes = 0
        for t in step["inputs"]:
            if t in ctx.on_device:
                continue   # produced by an earlier fabric step: already in DDR
            blob = to_blocked(values[t], rows)
            ctx.buf.write(self.tensors[t]["offset"], blob)
            nbytes += blob.size
        ctx.buf.flush()
        self._count("ps_to_pl", nbytes, time.perf_counter() - start, step=k)
        insn_base = ctx.base + self._program_offset + step["insn_start"] * INSN_BYTES
        window = (ctx.base, ctx.buf.size)
        self._engine.acquire(frame)
        try:
            start = time.perf_counter()
            self.device.start(insn_base, step["insn_count"], window)
            try:
                self.device.wait(self.timeout)
            except DeviceTimeout as exc:
                raise DeviceTimeout(exc.seconds, step["insn_start"]) from None
            except DeviceError as exc:
                raise self._located(exc, step) from None
            seconds = time.perf_counter() - start
            cycles = self.device.read_wide("CYCLES")
        finally:
            self._engine.release()
        self._count("segment", cycles, seconds, k)
        start = time.perf_counter()
        ctx.buf.invalidate()
        nbytes = 0
        for t in step["outputs"]:
            d = self.tensors[t]
            h, w, c = d["canon"]
            n = -(-c // rows) * h * w * rows
            raw = ctx.buf.read(d["offset"], n)
            values[t] = from_blocked(raw, h, w, c, rows, np.dtype(d["dtype"])).reshape(d["shape"])
            nbytes += n
        ctx.on_device.update(step["outputs"])
        self._count("pl_to_ps", nbytes, time.perf_counter() - start, step=k)

    def _located(self, exc, step):
        index = step["insn_start"] + exc.index
        node = next((name for first, count, name in self._layers
                     if first <= index < first + count), None)
        where = f" (layer {node!r})" if node else ""
        return DeviceError(exc.code, index, f"instruction {index}{where}: engine error "
                           f"{exc.code.name}")
