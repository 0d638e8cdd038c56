from dist_cluster.checkpoint.manager import complete_tags, latest, load_rank_state, read_meta, save, to_universal

__all__ = ["complete_tags", "latest", "load_rank_state", "read_meta", "save", "to_universal"]
