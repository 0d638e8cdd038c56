"""What an FEC's clustering did to an image: linked pool assignments, K-Means merge, overlays."""
from dist_cluster.interpret.inspect import inspect_image, prepare_image
from dist_cluster.interpret.overlay import save_segment_figure
from dist_cluster.interpret.segments import (
                                             FEATURE_SOURCES,
                                             SegmentPyramid,
                                             blocks_to_pixels,
                                             compact,
                                             link_assignments,
                                             merge_clusters,
                                             segment_pyramid,
)
from dist_cluster.interpret.weights import fec_weights, infer_variant, load_fec, read_state_dict

__all__ = ["FEATURE_SOURCES", "inspect_image", "prepare_image", "SegmentPyramid", "blocks_to_pixels", "compact",
           "link_assignments", "merge_clusters", "segment_pyramid", "save_segment_figure", "fec_weights",
           "infer_variant", "load_fec", "read_state_dict"]
