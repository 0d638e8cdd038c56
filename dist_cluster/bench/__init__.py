"""Benchmarks that put dist_cluster beside the peer a user would compare it with, in the same process.

    python -m dist_cluster.bench                          # every case, full size
    python -m dist_cluster.bench kmeans knn data --procs 1 2
    python -m dist_cluster.bench --quick                  # every case on small inputs: checks exactness only
    python -m dist_cluster.bench --device cuda            # knn and kmeans on one GPU (plain torch, faiss-gpu)

Each case (`registry.CASES`) times ours and its peer as the median of `--repeats` interleaved repetitions
(`timer.paired`), checks that the results agree, and returns table rows; `report` prints one table with a
ratio column and the target, and appends the rows to runs/bench/<case>.jsonl. The exit status is 1 when an
exactness check fails (never because of speed). `--device cuda` runs the kNN (200k and 1M × 768 fp16) and
k-means (1M × 128, k = 1000) cases on the GPU beside the plain torch loops and faiss-gpu where it imports,
with each row's share of the fp16/fp32 matmul rate measured in the same run; without CUDA it stops with
"no CUDA device". The CPU cases have rows for the device paths run on CPU (`path="device"`).
"""
