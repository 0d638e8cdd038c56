from dist_cluster.checkpoint.integrity import verify
from dist_cluster.checkpoint.layout import complete_tags, latest, read_meta
from dist_cluster.checkpoint.resume import DamagedCheckpoints, latest_finite, load_rank_state, resume_tag, to_universal
from dist_cluster.checkpoint.saving import DiskFull, save

__all__ = ["DamagedCheckpoints", "DiskFull", "complete_tags", "latest", "latest_finite",
           "load_rank_state", "read_meta", "resume_tag", "save", "to_universal", "verify"]
