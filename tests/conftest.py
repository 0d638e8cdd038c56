import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "recipes"))   # the recipes' shared bases: `import common.unic`
os.environ.setdefault("DS_ACCELERATOR", "cpu")
