"""``bamboo advise --sweep``: a zoo family over width multipliers and input sizes, and charts.

Every point is built by the model zoo (:func:`bamboo.models.zoo.build_quantized`, the
same models ``make bench`` measures) and estimated by :func:`bamboo.advise.estimate`
(compiler, cycle model, processor-side cost model). The grid marks the points that meet
``--fps``; :func:`write_sweep_png` plots FPS against MACs (and against the user's own
accuracy figures when a CSV of them is given).
"""

import csv
import pathlib
import time

__all__ = [
    "default_grid",
    "family_of",
    "read_accuracy",
    "render_sweep",
    "sweep",
    "write_blocks_png",
    "write_sweep_png",
]

WIDTHS = (0.5, 0.75, 1.0)
#: Input sizes of the default grid, as fractions of the family's nominal size.
SIZES = (4 / 7, 5 / 7, 6 / 7, 1.0)


def family_of(model, family=None):
    """The zoo family of ``model`` (a zoo name, or a file whose name starts with one)."""
    from bamboo.models import zoo

    from .advise import AdviseError

    if family is not None:
        if family not in zoo.ZOO:
            raise AdviseError(
                f"--family must be one of {', '.join(sorted(zoo.ZOO))}, not {family!r}"
            )
        return family
    stem = pathlib.Path(str(model)).name
    names = [
        n for n in zoo.ZOO if stem == n or stem.startswith(n + "-") or stem.startswith(n + ".")
    ]
    if not names:
        raise AdviseError(
            f"--sweep needs a zoo family: {stem!r} names none; pass --family "
            f"(one of {', '.join(sorted(zoo.ZOO))})"
        )
    return max(names, key=len)


def default_grid(family):
    """``(widths, resolutions)`` of the default sweep of ``family``."""
    from bamboo.models import zoo

    entry = zoo.ZOO[family]
    step = max(32, entry.multiple)
    res = sorted({max(step, round(entry.resolution * f / step) * step) for f in SIZES})
    return WIDTHS, res


def read_accuracy(path):
    """``{(width, resolution): accuracy}`` from a CSV with columns width,resolution,accuracy."""
    from .advise import AdviseError

    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
        return {(float(r["width"]), int(r["resolution"])): float(r["accuracy"]) for r in rows}
    except OSError as exc:
        raise AdviseError(f"--accuracy {path}: {exc.strerror}") from None
    except (KeyError, ValueError, TypeError):
        raise AdviseError(
            f"--accuracy {path}: needs columns width,resolution,accuracy with numbers"
        ) from None


def sweep(
    model,
    board="ultra96",
    clock_mhz=250.0,
    fps=None,
    widths=None,
    resolutions=None,
    family=None,
    accuracy=None,
    progress=True,
):
    """Estimate ``family`` (or the family of ``model``) at every width x resolution."""
    from bamboo.arch import preset
    from bamboo.models import zoo

    from .advise import AdviseError, estimate
    from .report import progress as bar

    family = family_of(model, family)
    dw, dr = default_grid(family)
    widths, resolutions = list(widths or dw), list(resolutions or dr)
    acc = read_accuracy(accuracy) if accuracy else {}
    config = preset(board)
    points, start = [], time.perf_counter()
    total = len(widths) * len(resolutions)
    for res in resolutions:
        for width in widths:
            try:
                path = zoo.build_quantized(family, res, width)
            except ValueError as exc:
                raise AdviseError(str(exc)) from None
            est = estimate(path, config, board, clock_mhz)
            p = {"width": width, "resolution": res, **est.summary()}
            p["accuracy"] = acc.get((width, res))
            p["meets_target"] = None if fps is None else est.fps >= fps
            points.append(p)
            if progress:
                bar(f"{family} sweep", len(points), total, start, time.perf_counter())
    return {
        "family": family,
        "board": board,
        "clock_mhz": clock_mhz,
        "target_fps": fps,
        "widths": widths,
        "resolutions": resolutions,
        "points": points,
        "seconds": round(time.perf_counter() - start, 1),
    }


def render_sweep(result):
    """The sweep as a grid: a row per resolution, a column per width, FPS and MACs."""
    fps = result["target_fps"]
    lines = [
        f"{result['family']} on {result['board']} at {result['clock_mhz']:g} MHz: "
        "projected FPS / M MACs"
        + (f"; * meets {fps:g} FPS" if fps else "")
        + f" ({len(result['points'])} points in {result['seconds']:.0f} s)"
    ]
    at = {(p["width"], p["resolution"]): p for p in result["points"]}
    lines.append(f"{'res':>5} " + " ".join(f"{'x' + format(w, 'g'):>18}" for w in result["widths"]))
    for r in result["resolutions"]:
        cells = []
        for w in result["widths"]:
            p = at[(w, r)]
            mark = "*" if p["meets_target"] else " "
            cells.append(f"{p['fps']:>8.1f}{mark}/{p['macs'] / 1e6:>7.1f}M ")
        lines.append(f"{r:>5} " + " ".join(f"{c:>18}" for c in cells))
    if fps:
        best = [p for p in result["points"] if p["meets_target"]]
        if best:
            top = max(best, key=lambda p: (p["accuracy"] or 0, p["macs"]))
            lines.append(
                f"largest configuration meeting {fps:g} FPS: x{top['width']:g} @ "
                f"{top['resolution']} ({top['fps']:.1f} FPS, "
                f"{top['macs'] / 1e6:.1f} M MACs, {top['bound']}-bound)"
            )
        else:
            lines.append(f"no configuration meets {fps:g} FPS")
    return "\n".join(lines)


def write_sweep_png(result, path):
    """FPS against MACs for every point (and against accuracy when there are figures)."""
    from .report import _pyplot

    plt = _pyplot()
    pts = result["points"]
    with_acc = [p for p in pts if p["accuracy"] is not None]
    fig, axes = plt.subplots(
        1, 2 if with_acc else 1, figsize=(11 if with_acc else 6.5, 4.5), dpi=100, squeeze=False
    )
    try:
        panels = [("macs", "M MACs per frame", 1e-6)]
        if with_acc:
            panels.append(("accuracy", "accuracy (your CSV)", 1.0))
        for ax, (key, label, scale) in zip(axes[0], panels):
            shown = [p for p in pts if p[key] is not None]
            for w in result["widths"]:
                mine = [p for p in shown if p["width"] == w]
                ax.plot(
                    [p[key] * scale for p in mine],
                    [p["fps"] for p in mine],
                    marker="o",
                    label=f"width x{w:g}",
                )
                for p in mine:
                    ax.annotate(
                        str(p["resolution"]),
                        (p[key] * scale, p["fps"]),
                        fontsize=7,
                        xytext=(3, 3),
                        textcoords="offset points",
                    )
            if result["target_fps"]:
                ax.axhline(
                    result["target_fps"],
                    color="black",
                    linestyle="--",
                    linewidth=1,
                    label=f"target {result['target_fps']:g} FPS",
                )
            ax.set_xlabel(label)
            ax.set_ylabel(f"projected FPS at {result['clock_mhz']:g} MHz")
            ax.grid(True, linewidth=0.3)
            ax.legend(fontsize=8)
        fig.suptitle(
            f"{result['family']} on {result['board']} (cycle model; labels: input size)", fontsize=9
        )
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path


def write_blocks_png(result, path):
    """A bar per block: fabric, processor and PS/PL milliseconds per frame, stacked."""
    from .report import _pyplot

    plt = _pyplot()
    blocks = result["blocks"]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.22 * len(blocks) + 2), 4.0), dpi=100)
    try:
        xs = range(len(blocks))
        fab = [b["fabric_ms"] for b in blocks]
        cpu = [b["cpu_ms"] for b in blocks]
        ax.bar(xs, fab, label="fabric", color="tab:blue")
        ax.bar(xs, cpu, bottom=fab, label="processor", color="tab:red")
        ax.bar(
            xs,
            [b["pspl_ms"] for b in blocks],
            bottom=[a + b for a, b in zip(fab, cpu)],
            label="PS/PL transfer",
            color="tab:gray",
        )
        ax.set_xticks(list(xs))
        ax.set_xticklabels([b["block"][-12:] for b in blocks], rotation=90, fontsize=6)
        ax.set_ylabel("ms per frame")
        ax.set_title(
            f"{pathlib.Path(result['model']).name} on {result['board']} at "
            f"{result['clock_mhz']:g} MHz: {result['fps']:.1f} FPS",
            fontsize=9,
        )
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path
