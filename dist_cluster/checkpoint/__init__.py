from dist_cluster.checkpoint.manager import (
                                             DamagedCheckpoints,
                                             DiskFull,
                                             complete_tags,
                                             latest,
                                             latest_finite,
                                             load_rank_state,
                                             read_meta,
                                             resume_tag,
                                             save,
                                             to_universal,
                                             verify,
)

__all__ = ["DamagedCheckpoints", "DiskFull", "complete_tags", "latest", "latest_finite",
           "load_rank_state", "read_meta", "resume_tag", "save", "to_universal", "verify"]
