"""Exact sharded nearest neighbours and UNIC's neighbour mining over a whole data set."""
from dist_cluster.neighbors.knn import Neighbors, iter_knn, knn, prepare
from dist_cluster.neighbors.mining import MiningResult, clean_mask, mine_neighbors, pair_distance, union_sizes
from dist_cluster.neighbors.sampling import NegativeSampler, sample_positives
from dist_cluster.neighbors.stats import mining_stats, neighbor_purity, purity_at_k, purity_vs_kept, same_class_prior
from dist_cluster.neighbors.store import load_mining, mine_or_load, save_mining
from dist_cluster.neighbors.topk import lexsort_rows, merge_topk, topk_lex

__all__ = ["Neighbors", "iter_knn", "knn", "prepare", "MiningResult", "clean_mask", "mine_neighbors",
           "pair_distance", "union_sizes", "NegativeSampler", "sample_positives", "mining_stats",
           "neighbor_purity", "purity_at_k", "purity_vs_kept", "same_class_prior", "load_mining", "mine_or_load",
           "save_mining", "lexsort_rows", "merge_topk", "topk_lex"]
