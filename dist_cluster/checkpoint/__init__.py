from dist_cluster.checkpoint.manager import (
                                             complete_tags,
                                             latest,
                                             latest_finite,
                                             load_rank_state,
                                             read_meta,
                                             save,
                                             to_universal,
)

__all__ = ["complete_tags", "latest", "latest_finite", "load_rank_state", "read_meta", "save", "to_universal"]
