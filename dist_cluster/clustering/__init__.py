"""Distributed k-means and cluster-id matching."""
from dist_cluster.clustering.kmeans import KMeansResult, assign, kmeans, kmeans_predict
from dist_cluster.clustering.matching import hungarian_match, match_labels, relabel
from dist_cluster.clustering.seeding import kmeans_plusplus, random_rows

__all__ = ["KMeansResult", "assign", "kmeans", "kmeans_predict", "hungarian_match", "match_labels", "relabel",
           "kmeans_plusplus", "random_rows"]
