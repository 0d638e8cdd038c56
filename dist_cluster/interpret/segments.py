"""FEC's ad-hoc segments (paper §5.2, Eq. 8): chain the ClusterPool assignments into a pyramid of ever larger
segments of the input, then merge the final clusters with K-Means on their deep features for reading.

seg_l(block b) = a_l[... a_2[a_1[b]]]; pixel (y, x) lies in stem block (y // s)·W_0 + x // s (s = stem stride).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import median_filter
from sklearn.cluster import KMeans

FEATURE_SOURCES = ("values", "key_centres")   # R of Eq. 6 (paper) | the last pool's key centres (reference code)


@dataclass
class SegmentPyramid:
    levels: list[np.ndarray]   # per pool: (H, W) int labels 0..n_l-1, empty clusters dropped
    merged: np.ndarray         # (H, W) K-Means merge of the last level, labels 0..k-1
    display: np.ndarray        # `merged` after a median filter, for display only


def link_assignments(assignments: list[np.ndarray]) -> list[np.ndarray]:
    """assignments[l][n] = cluster at level l+1 of unit n at level l. Returns per level the cluster of every
    level-0 block (indices into that level's clusters, not compacted)."""
    out, current = [], np.arange(len(assignments[0]))
    for a in assignments:
        current = np.asarray(a)[current]
        out.append(current)
    return out


def blocks_to_pixels(block_labels: np.ndarray, grid_hw: tuple[int, int], image_hw: tuple[int, int]) -> np.ndarray:
    gh, gw = grid_hw
    sy, sx = image_hw[0] // gh, image_hw[1] // gw
    ys, xs = np.arange(image_hw[0]) // sy, np.arange(image_hw[1]) // sx
    return block_labels.reshape(gh, gw)[ys[:, None], xs[None, :]]


def compact(labels: np.ndarray) -> np.ndarray:
    """Relabel to 0..n-1 in order of first id, dropping ids no pixel carries."""
    return np.unique(labels, return_inverse=True)[1].reshape(labels.shape)


def merge_clusters(final_labels: np.ndarray, features: np.ndarray, k: int = 8, seed: int = 0) -> np.ndarray:
    """K-Means (scikit-learn defaults but a fixed seed) on the features of the non-empty final clusters."""
    present = np.unique(final_labels)
    k = min(k, len(present))
    km = KMeans(n_clusters=k, random_state=seed).fit(np.asarray(features, dtype=np.float64)[present])
    lut = np.full(features.shape[0], -1, dtype=np.int64)
    lut[present] = km.labels_
    return lut[final_labels]


def segment_pyramid(trace, index: int, image_hw: tuple[int, int], k: int = 8, features: str = "values",
                    median_size: int = 5, seed: int = 0) -> SegmentPyramid:
    """Segments of image `index` of a batch from the model's ClusterTrace (forward(x, return_assignments=True))."""
    if features not in FEATURE_SOURCES:
        raise ValueError(f"features must be one of {FEATURE_SOURCES}")
    pools = trace.pools
    linked = link_assignments([p.assignments[index].cpu().numpy() for p in pools])
    grid = pools[0].in_hw
    levels = [compact(blocks_to_pixels(lab, grid, image_hw)) for lab in linked]
    feats = getattr(pools[-1], features)[index].float().cpu().numpy()
    merged = compact(blocks_to_pixels(merge_clusters(linked[-1], feats, k, seed), grid, image_hw))
    display = median_filter(merged, size=median_size, mode="nearest") if median_size > 1 else merged
    return SegmentPyramid(levels, merged, display)
