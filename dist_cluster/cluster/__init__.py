"""A user's own data in one command: `python -m dist_cluster.cluster DATA --method M --k K [key=value ...]`.

DATA is a feature array (.npy/.npz/.pt, labels optional), a folder of images (class sub-folders optional) or a
manifest .json. See `__main__` for the options, `inputs` for what each input must look like, `configs` for
what is sized from the data, `run` for n_init, `table` for the result table.
"""
