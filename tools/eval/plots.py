"""Success and precision plots of OPE from `tools.eval.scoring.evaluate()`'s report (PNG and PDF).

As the OTB toolkit draws them: one curve per tracker, the legend ranked by the plot's own score
("MDNet [0.678]": success AUC on success plots, P@20 on precision plots), one pair per attribute
titled "Success plots of OPE - illumination variation (12)" (12 = sequences with it).

Matplotlib's Agg canvas is used directly (no pyplot): no global backend switch, no display needed,
and nothing leaks between figures when a process draws many.
"""
from __future__ import annotations

import re
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from online.atomic import atomic_write

FORMATS = ("png", "pdf")
FIGSIZE = (6.0, 5.0)  # inches; PNG at DPI -> 720 x 600 px
DPI = 120
# Ten distinct colours, then the same colours dashed, then dotted: readable for up to 30 trackers.
_COLORS = ["#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
           "#7f7f7f", "#bcbd22"]
_LINES = ["-", "--", ":"]

# kind: (curve key, threshold key, score key, x label, y label, legend place, title head)
KINDS = {
    "success": ("success_curve", "success", "auc", "Overlap threshold", "Success rate",
                "lower left", "Success plots of OPE"),
    "precision": ("precision_curve", "precision", "precision_20", "Location error threshold (pixels)",
                  "Precision", "lower right", "Precision plots of OPE"),
    "norm_precision": ("norm_precision_curve", "norm_precision", "norm_precision",
                       "Normalized location error threshold", "Normalized precision", "lower right",
                       "Normalized precision plots of OPE"),
}


def plot(kind: str, entries: dict[str, dict], thresholds: list[float], title: str, out_base: Path,
         styles: dict[str, int] | None = None) -> list[Path]:
    """One plot: `entries` = {tracker: {curve key: [...], score key: x}}; writes out_base.png/.pdf.

    `styles` {tracker: index} keeps a tracker's colour the same on every plot; without it the
    colours follow this plot's ranking."""
    curve_key, _, score_key, xlabel, ylabel, loc, _ = KINDS[kind]
    fig = Figure(figsize=FIGSIZE, dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ranked = sorted(entries.items(), key=lambda kv: (-kv[1][score_key], kv[0]))
    for rank, (name, e) in enumerate(ranked):
        i = rank if styles is None else styles[name]
        ax.plot(thresholds, e[curve_key], color=_COLORS[i % len(_COLORS)],
                linestyle=_LINES[(i // len(_COLORS)) % len(_LINES)], linewidth=2,
                label=f"{name} [{e[score_key]:.3f}]")
    ax.set_xlim(thresholds[0], thresholds[-1])
    # A little headroom: a curve at 1.0 would otherwise hide under the top frame.
    ax.set_ylim(0.0, 1.02)
    ax.set_yticks([i / 10 for i in range(11)])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, linestyle=":", linewidth=0.8)
    ax.legend(loc=loc, fontsize="small" if len(ranked) <= 10 else "x-small", framealpha=0.9)
    fig.tight_layout()
    out = []
    out_base.parent.mkdir(parents=True, exist_ok=True)
    for fmt in FORMATS:
        path = out_base.with_name(f"{out_base.name}.{fmt}")
        # The format is explicit: the temporary name does not end in .png/.pdf. No creation date in
        # the PDF, so the same report gives the same file.
        meta = {"CreationDate": None} if fmt == "pdf" else None
        atomic_write(path, lambda tmp, fmt=fmt, meta=meta: fig.savefig(tmp, format=fmt, metadata=meta))
        out.append(path)
    return out


def write_plots(report: dict, out_dir: str | Path) -> list[Path]:
    """Overall success / precision / normalized-precision plots and one success / precision pair
    per attribute of the report; returns the files written."""
    out_dir = Path(out_dir)
    trackers = report["trackers"]
    # Colours by overall AUC rank (the report's order), the same on every plot; the legend order
    # is each plot's own ranking.
    styles = {name: i for i, name in enumerate(trackers)}
    written = []
    for kind in ("success", "precision", "norm_precision"):
        _, thr_key, *_, head = KINDS[kind]
        written += plot(kind, trackers, report["thresholds"][thr_key], head, out_dir / f"{kind}_OPE", styles)
    for tag, attr in report.get("attributes", {}).items():
        entries = {name: t["attributes"][tag] for name, t in trackers.items() if tag in t.get("attributes", {})}
        if not entries:
            continue
        for kind in ("success", "precision"):
            _, thr_key, *_, head = KINDS[kind]
            title = f"{head} - {attr['name']} ({len(attr['sequences'])})"
            written += plot(kind, entries, report["thresholds"][thr_key], title,
                            out_dir / f"{kind}_OPE_{_safe(tag)}", styles)
    return written


def _safe(tag: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", tag)
