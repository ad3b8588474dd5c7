"""Command line: `DistillationArguments` from flags and/or a YAML file (`--config run.yaml`)."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml
from transformers import HfArgumentParser

from .arguments import DistillationArguments


def make_parser() -> HfArgumentParser:
    parser = HfArgumentParser(DistillationArguments)
    parser.add_argument("--config", default=None, help="YAML file of arguments; flags given on the command line win.")
    return parser


def parse_args(argv: list[str] | None = None) -> DistillationArguments:
    """Parse flags; values in `--config file.yaml` become defaults that explicit flags override.

    Invalid arguments exit like argparse does (usage, then `error: <what is wrong and the fix>`, status 2).
    """
    parser = make_parser()
    argv = sys.argv[1:] if argv is None else argv
    known, _ = parser.parse_known_args(argv)
    try:
        if known.config:
            config = yaml.safe_load(Path(known.config).read_text()) or {}
            unknown = sorted(set(config) - {a.dest for a in parser._actions})
            if unknown:
                raise ValueError(f"Unknown keys {unknown} in {known.config}; use the flag names of `--help`.")
            parser.set_defaults(**config)
        return parser.parse_args_into_dataclasses(args=argv, look_for_args_file=False)[0]
    except (ValueError, OSError) as error:  # a bad value, an unknown YAML key, an unreadable --config
        parser.error(str(error))
