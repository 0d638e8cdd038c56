"""dist_cluster: distributed clustering-based representation learning (FEC, CgMCR², UNIC, PICI).

`from dist_cluster import CgMCR2, UNIC` gives scikit-learn-style estimators (dist_cluster.estimators); they
load on first use so that `import dist_cluster` stays cheap.
"""
_ESTIMATORS = ("CgMCR2", "UNIC")
__all__ = list(_ESTIMATORS)


def __getattr__(name: str):
    if name in _ESTIMATORS:
        from dist_cluster import estimators
        return getattr(estimators, name)
    raise AttributeError(f"module 'dist_cluster' has no attribute {name!r}")
