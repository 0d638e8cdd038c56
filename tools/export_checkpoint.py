#!/usr/bin/env python
"""Write a plain fp32 state_dict of a run's model: `python tools/export_checkpoint.py RUN_DIR [--out model.pt]`.

The file loads with torch.load(path, weights_only=True) into the bare model (the method's export_module()).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("DS_ACCELERATOR", "cpu")

import torch  # noqa: E402

from dist_cluster.checkpoint.export import consolidated_state_dict, export_state_dict  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("path", help="run directory or its checkpoints/ directory")
    p.add_argument("--tag", default=None, help="checkpoint tag (default: newest complete)")
    p.add_argument("--out", default=None, help="output file (default: RUN_DIR/export/model.pt)")
    p.add_argument("--whole-method", action="store_true", help="keep every module of the method, not just the model")
    a = p.parse_args(argv)
    state = consolidated_state_dict(a.path, a.tag) if a.whole_method else export_state_dict(a.path, a.tag)
    out = a.out or os.path.join(a.path, "export", "model.pt")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    torch.save(state, out)
    print(f"wrote {out}: {len(state)} tensors, {sum(v.numel() for v in state.values()):,} values")


if __name__ == "__main__":
    main()
