"""PySlowFast's command line: ``--cfg FILE [KEY VALUE ...] [--opts KEY VALUE ...]`` plus
``--init_method``, ``--num_shards`` and ``--shard_id``.
"""

import argparse
from typing import List, Optional, Sequence

from fvcore.common.config import CfgNode

from .errors import ConfigError
from .loading import load_config

_YAML_SUFFIXES = (".yaml", ".yml")


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """The command line. The first ``--cfg`` item is a config file whatever its name; the items after
    it are config files up to the first that does not end in ``.yaml``/``.yml``, then overrides."""
    parser = argparse.ArgumentParser(
        description="Train and/or test a stica_slowfast model (PySlowFast-style).",
        epilog="Overrides are KEY VALUE pairs, e.g. SOLVER.BASE_LR 0.1 NUM_GPUS 0.",
    )
    parser.add_argument("--cfg", dest="cfg_files", nargs="+", default=[], metavar="FILE",
                        help="YAML config file(s), merged in order; may be followed by KEY VALUE overrides")
    parser.add_argument("--init_method", default="tcp://localhost:9999",
                        help="torch.distributed rendezvous shared by all shards, e.g. tcp://HOST:PORT")
    parser.add_argument("--num_shards", type=int, default=None, help="number of machines (sets NUM_SHARDS)")
    parser.add_argument("--shard_id", type=int, default=None, help="index of this machine (sets SHARD_ID)")
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[], help="KEY VALUE overrides")
    parser.add_argument("overrides", nargs="*", default=[], help="KEY VALUE overrides")
    args = parser.parse_args(argv)
    # `--cfg a.yaml KEY VALUE` puts the pairs into cfg_files (nargs="+"); move them to the overrides.
    # The first item is a file even without the suffix (as in PySlowFast), so that a missing or
    # misnamed one is reported as a file, not as an override key.
    split = next((i for i, item in enumerate(args.cfg_files)
                  if i and not item.lower().endswith(_YAML_SUFFIXES)), None)
    extra: List[str] = []
    if split is not None:
        args.cfg_files, extra = args.cfg_files[:split], args.cfg_files[split:]
    args.opts = extra + list(args.overrides) + list(args.opts or [])
    return args


def load_config_from_args(args: argparse.Namespace) -> CfgNode:
    """Defaults <- ``--cfg`` files <- overrides <- ``--num_shards/--shard_id``; validated and frozen."""
    opts = list(args.opts)
    if args.num_shards is not None:
        opts += ["NUM_SHARDS", str(args.num_shards)]
    if args.shard_id is not None:
        opts += ["SHARD_ID", str(args.shard_id)]
    return load_config(args.cfg_files, opts)


__all__ = ["ConfigError", "load_config_from_args", "parse_args"]
