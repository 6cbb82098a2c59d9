"""The compiler's Python API: :func:`compile` a quantized ONNX model to a ``.bmb`` artifact,
:func:`inspect` how it maps onto the fabric and the CPU.

Both are importable from the package root (``bamboo.compiler.compile``,
``bamboo.compiler.inspect``); docs/api.md lists the whole public API.
"""

from bamboo.arch import AcceleratorConfig, preset

from .backend import compile_artifact
from .cli_inspect import compile_model

__all__ = ["compile", "inspect"]


def inspect(model, *, approx=(), se_on_fabric=False, fc_on_fabric=False):
    """Import ``model`` (a path to a quantized ONNX model, QDQ or QOperator) and run the
    pass pipeline; returns the partitioned IR graph.

    ``bamboo.compiler.inspect.render(graph)`` is the table ``bamboo inspect`` prints,
    ``bamboo.compiler.inspect.summary(graph)`` its figures as a dict. ``approx``:
    approximations allowed (``"leaky-shift"``); ``se_on_fabric``/``fc_on_fabric`` put the
    squeeze-excite / every fully connected layer on the fabric as 1x1 convolutions.
    Errors are :class:`~bamboo.arch.errors.BambooError`.
    """
    return compile_model(
        str(model), approx=tuple(approx), se_on_fabric=se_on_fabric, fc_on_fabric=fc_on_fabric
    )


def compile(
    model,
    config="ultra96",
    *,
    approx=(),
    se_on_fabric=False,
    fc_on_fabric=False,
    progress=None,
    column_taps=True,
):
    """Compile ``model`` for ``config`` (a preset name or an
    :class:`~bamboo.arch.AcceleratorConfig`); returns the ``.bmb`` artifact's bytes, which
    ``bamboo.runtime.session.Session`` runs. Options as :func:`inspect`;
    ``progress(done, total, layer)`` is called as layers are lowered; ``column_taps=False``
    keeps a stem's own shape on the fabric (no processor-side ``column_taps`` node,
    compiler/backend/stem.py)."""
    if not isinstance(config, AcceleratorConfig):
        config = preset(config)
    graph = inspect(model, approx=approx, se_on_fabric=se_on_fabric, fc_on_fabric=fc_on_fabric)
    return compile_artifact(graph, config, progress, column_taps)
