"""The `hf-distill` command: `hf-distill distill [flags]` runs the whole pipeline; errors caused by the input or the
environment end it with one line `error: <problem and fix>` (status 2 for bad input, 1 for a failure on the way)."""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import logging
import os
import sys
from pathlib import Path
from typing import Callable, NoReturn

import torch
import yaml
from transformers import HfArgumentParser

from . import __version__
from .arguments import ARGUMENT_ALIASES, DistillationArguments, json_object
from .evaluation import PROTOCOL_ALIASES, PROTOCOLS
from .hub import HubError
from .leaderboard import render_leaderboard
from .scoring import evaluate_set
from .trainer import DistillationTrainer

DEBUG_FLAG, DEBUG_ENV = "--debug", "HF_DISTILL_DEBUG"
BAD_INPUT, FAILURE, INTERRUPTED = 2, 1, 130
OUT_OF_MEMORY_FIX = "Lower --segment_size (the image step), --batch_size or --batch_syn, or use --mixed_precision bf16."


class OneLineErrors:
    """An argparse mixin: a usage error prints `error: <message>` and a pointer to --help, and exits with 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(BAD_INPUT, f"error: {message} (see `{self.prog} --help`)\n")


class DistillParser(OneLineErrors, HfArgumentParser):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, allow_abbrev=False, **kwargs)  # so that --debug is only ever spelt out


def make_parser(prog: str = "hf-distill distill") -> HfArgumentParser:
    """`DistillationArguments` flags, plus `--config run.yaml` and `--debug`."""
    parser = DistillParser(DistillationArguments, prog=prog)
    for action in parser._actions:
        if action.dest == "model_kwargs":
            action.type = _json_flag
    parser.add_argument("--config", default=None, help="YAML file of arguments; flags given on the command line win.")
    parser.add_argument(DEBUG_FLAG, action="store_true", help=f"Show the traceback of an error (or set {DEBUG_ENV}=1).")
    return parser


def _json_flag(text: str) -> dict:
    try:
        return json_object(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def parse_args(argv: list[str] | None = None, prog: str = "hf-distill distill") -> DistillationArguments:
    """Parse flags; values in `--config file.yaml` become defaults that explicit flags override.

    Invalid arguments print `error: <what is wrong and the fix>` and exit with status 2.
    """
    parser = make_parser(prog)
    argv = sys.argv[1:] if argv is None else argv
    known, unknown = parser.parse_known_args(argv)
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}{_close_flags(parser, unknown)}")
    try:
        if known.config:
            config = yaml.safe_load(Path(known.config).read_text()) or {}
            if not isinstance(config, dict):
                raise ValueError(f"{known.config} must be a YAML mapping of flag names to values.")
            config = {ARGUMENT_ALIASES.get(key, key): value for key, value in config.items()}
            unknown = sorted(set(config) - {f.name for f in dataclasses.fields(DistillationArguments)})
            if unknown:
                raise ValueError(f"Unknown keys {unknown} in {known.config}; use the flag names of `--help`.")
            parser.set_defaults(**config)
        return parser.parse_args_into_dataclasses(args=argv, look_for_args_file=False)[0]
    except yaml.YAMLError as error:
        parser.error(f"{known.config} is not valid YAML: {' '.join(str(error).split())}")
    except (ValueError, OSError, TypeError, AttributeError) as error:  # a bad value or YAML value, an unknown key,
        parser.error(str(error))                                        # an unreadable --config


def _close_flags(parser: argparse.ArgumentParser, words: list[str]) -> str:
    """'; did you mean --x?' for the first unknown flag that is close to a known one."""
    flags = [flag for action in parser._actions for flag in action.option_strings]
    for word in words:
        close = difflib.get_close_matches(word.split("=")[0], flags, n=1, cutoff=0.75)
        if word.startswith("-") and close:
            return f"; did you mean {close[0]}?"
    return ""


def distill(args: DistillationArguments) -> None:
    """Teachers, distillation, evaluation, outputs and, with --push_to_hub, the Hub: what `hf-distill distill` runs."""
    trainer = DistillationTrainer(args)
    try:
        trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
        trainer.save_distilled()
        if args.do_eval:
            results = trainer.evaluate()
            trainer.save_eval_results(results)
            trainer.accelerator.print(trainer.results_table(results))
        trainer.accelerator.print(f"Outputs written to {args.output_dir}")
        if args.push_to_hub:
            trainer.accelerator.print(f"Pushed to {trainer.push_to_hub()}")
            if args.hub_teachers_id:
                trainer.accelerator.print(f"Pushed teachers to {trainer.push_teachers_to_hub()}")
    finally:
        trainer.accelerator.end_training()


def exit_status(error: BaseException) -> int | None:
    """2 for bad input, 1 for a failure of the environment or the run, None for anything else (a bug: traceback)."""
    if isinstance(error, (ValueError, FileNotFoundError, NotADirectoryError)):
        return BAD_INPUT
    if isinstance(error, (OSError, FloatingPointError, HubError, MemoryError, torch.OutOfMemoryError)):
        return FAILURE
    return None


def one_line(error: BaseException) -> str:
    """The error's message on one line, with the fix for running out of memory."""
    text = " ".join(str(error).split()) or type(error).__name__
    if isinstance(error, (MemoryError, torch.OutOfMemoryError)):
        text = f"Out of memory ({type(error).__name__}: {text[:200]}). {OUT_OF_MEMORY_FIX}"
    return text


def run(command: Callable[[], None], debug: bool) -> int:
    """Run `command`; an input or environment error becomes one `error:` line and a status (a traceback too with
    `debug`); any other error is a bug and keeps its traceback."""
    try:
        command()
        return 0
    except KeyboardInterrupt:
        if debug:
            raise
        print("error: interrupted; continue the run with --resume_from_checkpoint last.", file=sys.stderr)
        return INTERRUPTED
    except Exception as error:
        status = exit_status(error)
        if status is None or debug:
            raise
        print(f"error: {one_line(error)}", file=sys.stderr)
        return status


COMMANDS = {
    "distill": "Distil a dataset with APM: teachers, distillation, evaluation, outputs (flags: `hf-distill distill --help`).",
    "evaluate": "Score a distilled set under a named protocol, next to a random real subset (and the teachers).",
    "leaderboard": "Print a leaderboard JSON written by `hf-distill evaluate --leaderboard` as a Markdown table.",
}


def evaluate_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="hf-distill evaluate", description="Score SET on the test split of --dataset under each "
                           "--protocol and --models architecture; the random real subsets come from its train split.")
    parser.add_argument("set", metavar="SET", help="An hf-distill distilled/ folder or Hub dataset id, a `datasets` "
                        "image-classification set (hard labels, plus a `soft_label` column if any), or a .safetensors "
                        "release of another method ('images', 'labels', 'mean'/'std' or ZCA metadata).")
    parser.add_argument("--dataset", required=True, help="The real dataset the set was distilled from (Hub id, folder, "
                        "parquet files or 'digits').")
    parser.add_argument("--test_split", default=None, help="Test split or slice (default: 'test', else 'validation').")
    parser.add_argument("--protocol", nargs="+", choices=[*PROTOCOLS, *PROTOCOL_ALIASES], default=None,
                        help="Protocols (default: apm and hard for sets with soft labels, else hard). " + "; ".join(
                            f"{p.name}: {p.describe()}" for p in PROTOCOLS.values()) + " (SGD momentum 0.9, wd 5e-4, "
                        "lr x0.1 at half).")
    parser.add_argument("--models", nargs="+", default=None, help="Architectures (default: convnet3, convnet4 at >= 64 px).")
    parser.add_argument("--epochs", type=int, default=None, help="Epochs per model (default: the protocol's).")
    parser.add_argument("--lr", type=float, default=None, help="Learning rate (default: the protocol's).")
    parser.add_argument("--num_runs", type=int, default=3, help="Fresh models (and random subsets) per row.")
    parser.add_argument("--teachers", default=None, help="Teacher pool (folder or 'hf-hub:org/name'): its teachers get "
                        "a row, and teacher 0 labels the random subsets of soft-label protocols.")
    parser.add_argument("--zca", action="store_true", default=None, help="The set is ZCA-whitened (fitted on the train "
                        "split of --dataset); default: a release's own metadata, else no.")
    parser.add_argument("--method", default=None, help="Method name for the leaderboard (default: from the set).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--torch_compile", action="store_true", help="Compile each model's forward with torch.compile: "
                        "paid once per architecture and batch shape, faster training after (README: Cost).")
    parser.add_argument("--leaderboard", default=None, help="Add the rows to this JSON file (created if needed), each "
                        "as soon as its runs are done; rows it already has are not trained again.")
    parser.add_argument("--scores", action="store_true", help="Also train the rows DD-Ranking's scores need (README: "
                        "Scores): `hard`, the first protocol without augmentation, a full-train-split model.")
    parser.add_argument("--label_column", default=None, help="The integer class-id column of a `datasets` set "
                        "(default: a ClassLabel feature, a column named label/labels/..., or the only integer column).")
    parser.add_argument("--image_column", default=None, help="The image column of a `datasets` set (default: detected).")
    parser.add_argument(DEBUG_FLAG, action="store_true", help=f"Show the traceback of an error (or set {DEBUG_ENV}=1).")
    return parser


def evaluate(argv: list[str]) -> None:
    """`hf-distill evaluate`: print the rows (and notes) as Markdown; add them to --leaderboard."""
    args = evaluate_parser().parse_args(argv)
    if args.num_runs < 1 or (args.epochs is not None and args.epochs < 1):
        raise ValueError("--num_runs and --epochs must be positive.")
    result = evaluate_set(args.set, args.dataset, args.protocol, args.models, args.epochs, args.lr, args.num_runs,
                          args.teachers, args.zca, args.method, args.seed, test_split=args.test_split,
                          torch_compile=args.torch_compile, scores=args.scores, leaderboard=args.leaderboard,
                          label_column=args.label_column, image_column=args.image_column)
    print(result.to_markdown())
    if args.leaderboard:
        print(f"The {len(result.rows)} rows are in {args.leaderboard}")


def leaderboard(argv: list[str]) -> None:
    """`hf-distill leaderboard FILE.json`: the leaderboard as Markdown."""
    parser = CommandParser(prog="hf-distill leaderboard", description=COMMANDS["leaderboard"])
    parser.add_argument("file", metavar="FILE.json")
    parser.add_argument("--by_architecture", action="store_true",
                        help="One line per set and protocol, one column per architecture.")
    parser.add_argument("--scores", action="store_true", help="Add DD-Ranking's scores (IOR, HLR, LRS, ARS) of the "
                        "set rows that have the rows they need (README: Scores).")
    args = parser.parse_args(argv)
    path = Path(args.file)
    if not path.exists():
        raise ValueError(f"No leaderboard at {path}; write one with `hf-distill evaluate ... --leaderboard {path}`.")
    print(render_leaderboard(path, args.by_architecture, args.scores))


class CommandParser(OneLineErrors, argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, allow_abbrev=False, **kwargs)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `hf-distill`; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    parser = CommandParser(prog="hf-distill", description="Dataset distillation (APM) for Hugging Face image datasets.",
                           epilog=f"Add {DEBUG_FLAG} (or set {DEBUG_ENV}=1) to see the traceback of an error.")
    parser.add_argument("--version", action="version", version=f"hf-distill {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=CommandParser)
    for name, text in COMMANDS.items():
        commands.add_parser(name, help=text, add_help=False)
    words = [word for word in argv if word != DEBUG_FLAG]
    command = parser.parse_known_args(words[:1])[0].command
    if command is None:
        parser.print_help(sys.stderr)
        print(f"error: no command; run `hf-distill {{{','.join(COMMANDS)}}} [flags]` (flags go after the command).",
              file=sys.stderr)
        return BAD_INPUT
    argv.remove(command)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if command == "distill":
        args = parse_args(argv, prog=f"hf-distill {command}")
        return run(lambda: distill(args), debug)
    return run(lambda: {"evaluate": evaluate, "leaderboard": leaderboard}[command](argv), debug)
