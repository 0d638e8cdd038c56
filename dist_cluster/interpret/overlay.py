"""Coloured overlays of FEC segments, written as one PNG: the image, each pyramid level, the merged map."""
from __future__ import annotations

import os

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from skimage.color import label2rgb
from skimage.segmentation import mark_boundaries

from dist_cluster.interpret.segments import SegmentPyramid


def _as_float_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    return image.astype(np.float64) / 255.0 if image.dtype == np.uint8 else image.astype(np.float64)


def _upscale(a: np.ndarray, f: int) -> np.ndarray:
    # drawn at twice the input size so one-pixel boundaries stay thin next to 4-pixel blocks
    return a.repeat(f, axis=0).repeat(f, axis=1)


def level_panel(image: np.ndarray, labels: np.ndarray, upscale: int = 2) -> np.ndarray:
    """Each segment painted with its mean colour, boundaries in yellow (readable for hundreds of segments)."""
    avg = label2rgb(labels, image, kind="avg", bg_label=-1)
    return mark_boundaries(_upscale(avg, upscale), _upscale(labels, upscale), color=(1, 1, 0), mode="inner")


def merged_panel(image: np.ndarray, labels: np.ndarray, alpha: float = 0.5, upscale: int = 2) -> np.ndarray:
    colours = [tuple(c) for c in colormaps["tab10"].colors]
    over = label2rgb(labels, image, colors=colours, alpha=alpha, bg_label=-1, kind="overlay")
    return mark_boundaries(_upscale(over, upscale), _upscale(labels, upscale), color=(1, 1, 1), mode="inner")


def save_segment_figure(image: np.ndarray, pyramid: SegmentPyramid, path: str, title: str = "") -> str:
    image = _as_float_image(image)
    panels = [("input", image)]
    panels += [(f"pool {i + 1}: {int(lab.max()) + 1} segments", level_panel(image, lab))
               for i, lab in enumerate(pyramid.levels)]
    panels.append((f"K-Means: {int(pyramid.merged.max()) + 1} segments", merged_panel(image, pyramid.display)))
    fig = Figure(figsize=(3.2 * len(panels), 3.9))
    FigureCanvasAgg(fig)
    for i, (name, img) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        ax.imshow(np.clip(img, 0, 1), interpolation="nearest")
        ax.set_title(name, fontsize=10)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.92 if title else 1))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=130)
    return path
