"""Command line of slurm/submit.py: submitter keys (site fields and a few more) vs recipe overrides."""
from __future__ import annotations

import dataclasses
import difflib
import re
import shlex
from dataclasses import dataclass, field

from dist_cluster.config import ConfigError, set_key
from slurm.clusters import Site
from slurm.clusters import site as load_site

CLUSTERS = ("slurm", "local", "debug")
EXTRA_KEYS = ("recipe", "cli", "site", "cluster", "job_name")
FLAGS = ("--dry-run", "--wait", "--no-wait")


def submit_keys() -> list[str]:
    return list(EXTRA_KEYS) + [f.name for f in dataclasses.fields(Site)]


@dataclass
class Options:
    recipe: str = ""
    cli: str = ""                 # instead of a recipe: `python -m dist_cluster.cluster` arguments
    site_name: str | None = None
    cluster: str = "slurm"
    job_name: str | None = None
    site: Site = field(default_factory=Site)
    overrides: list[str] = field(default_factory=list)
    dry_run: bool = False
    wait: bool | None = None      # None: wait for local/debug runs, return at once for Slurm

    @property
    def tasks_per_node(self) -> int:
        return self.site.gpus_per_node if self.site.gpus_per_node > 0 else self.site.tasks_per_node

    @property
    def timeout_min(self) -> int:
        return parse_time(self.site.time)


def parse_time(text: str) -> int:
    """Slurm time formats (M, M:S, H:M:S, D-H, D-H:M, D-H:M:S) → whole minutes, rounded up."""
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", str(text).strip())
    if not m:
        raise ConfigError(f"bad value {text!r} for 'time': expected minutes, HH:MM:SS or D-HH:MM:SS")
    days, a, b, c = m.groups()
    if days is not None:    # D-H, D-H:M, D-H:M:S
        h, mi, s = int(a), int(b or 0), int(c or 0)
        seconds = int(days) * 86400 + h * 3600 + mi * 60 + s
    elif c is not None:     # H:M:S
        seconds = int(a) * 3600 + int(b) * 60 + int(c)
    elif b is not None:     # M:S
        seconds = int(a) * 60 + int(b)
    else:                   # M
        seconds = int(a) * 60
    if seconds <= 0:
        raise ConfigError(f"bad value {text!r} for 'time': must be positive")
    return -(-seconds // 60)


def _sbatch_value(v: str):
    return True if v.lower() in ("true", "yes", "") else v


def parse(argv: list[str]) -> Options:
    """Split argv; raises ConfigError with a clear message for anything malformed."""
    opts = Options()
    pairs = []
    for arg in argv:
        if arg in FLAGS:
            opts.dry_run |= arg == "--dry-run"
            opts.wait = True if arg == "--wait" else False if arg == "--no-wait" else opts.wait
        elif arg.startswith("-"):
            raise ConfigError(f"unknown flag {arg!r} (flags: {', '.join(FLAGS)}, -h)")
        elif "=" not in arg:
            raise ConfigError(f"expected key=value, got {arg!r}")
        else:
            pairs.append(arg.split("=", 1))
    sub = {k: v for k, v in pairs if k in submit_keys()}
    opts.site_name = sub.pop("site", None)
    try:
        opts.site = load_site(opts.site_name)
    except KeyError as e:
        raise ConfigError(e.args[0]) from None
    opts.recipe = sub.pop("recipe", "")
    opts.cli = sub.pop("cli", "")
    opts.cluster = sub.pop("cluster", "slurm")
    opts.job_name = sub.pop("job_name", None)
    if opts.cluster not in CLUSTERS:
        raise ConfigError(f"bad value {opts.cluster!r} for 'cluster': expected one of {list(CLUSTERS)}")
    for k, v in sub.items():
        if k == "srun_args":
            opts.site.srun_args = shlex.split(v)
        elif k == "setup":
            opts.site.setup.append(v)
        else:
            set_key(opts.site, k, v)
    for k, v in pairs:
        if k.startswith("sbatch."):
            opts.site.sbatch[k[len("sbatch."):]] = _sbatch_value(v)
        elif k not in submit_keys():
            opts.overrides.append(f"{k}={v}")
    if not opts.recipe and not opts.cli:
        raise ConfigError("missing recipe=NAME (a file in recipes/ or a path to a recipe .py), or "
                          "cli=\"DATA --method M --k K ...\" (python -m dist_cluster.cluster's arguments)")
    if opts.recipe and opts.cli:
        raise ConfigError("give recipe=NAME or cli=\"...\", not both")
    if opts.cli and opts.overrides:
        raise ConfigError(f"with cli=..., put config overrides inside it: {opts.overrides}")
    parse_time(opts.site.time)
    for name in ("nodes", "cpus_per_task", "tasks_per_node"):
        if getattr(opts.site, name) < 1:
            raise ConfigError(f"bad value {getattr(opts.site, name)} for '{name}': must be at least 1")
    if opts.site.gpus_per_node < 0:
        raise ConfigError(f"bad value {opts.site.gpus_per_node} for 'gpus_per_node': must be 0 or more")
    if opts.cluster != "slurm" and opts.site.nodes > 1:
        raise ConfigError(f"cluster={opts.cluster} runs on this machine only: use nodes=1")
    return opts


def submitter_hint(message: str) -> str:
    """Append close submitter keys to an 'unknown config key' error about an undotted key."""
    m = re.match(r"unknown config key '([^'.]+)'", message)
    if not m:
        return message
    near = difflib.get_close_matches(m.group(1), submit_keys(), n=3, cutoff=0.6)
    return message + (f"; submitter keys: {', '.join(near)}" if near else "")
