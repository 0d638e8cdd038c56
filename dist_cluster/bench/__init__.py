"""Benchmarks that put dist_cluster beside the peer a user would compare it with, in the same process.

    python -m dist_cluster.bench                          # every case, full size
    python -m dist_cluster.bench kmeans knn data --procs 1 2
    python -m dist_cluster.bench --quick                  # every case on small inputs: checks exactness only

Each case (`registry.CASES`) times ours and its peer as the median of `--repeats` interleaved repetitions
(`timer.paired`), checks that the results agree, and returns table rows; `report` prints one table with a
ratio column and the target, and appends the rows to runs/bench/<case>.jsonl. The exit status is 1 when an
exactness check fails (never because of speed).
"""
