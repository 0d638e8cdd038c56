"""Exact sharded nearest neighbours and UNIC's neighbour mining over a whole data set."""
from dist_cluster.neighbors.knn import Neighbors, iter_knn, knn, prepare
from dist_cluster.neighbors.topk import lexsort_rows, merge_topk, topk_lex

__all__ = ["Neighbors", "iter_knn", "knn", "prepare", "lexsort_rows", "merge_topk", "topk_lex"]
