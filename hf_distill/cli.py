"""The `hf-distill` command: `hf-distill distill [flags]` runs the whole pipeline; errors caused by the input or the
environment end it with one line `error: <problem and fix>` (status 2 for bad input, 1 for a failure on the way)."""

from __future__ import annotations

import argparse
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
from .arguments import DistillationArguments, json_object
from .hub import HubError
from .trainer import DistillationTrainer

DEBUG_FLAG, DEBUG_ENV = "--debug", "HF_DISTILL_DEBUG"
BAD_INPUT, FAILURE, INTERRUPTED = 2, 1, 130
OUT_OF_MEMORY_FIX = "Lower --segment_size (the image step), --batch_size or --batch_syn, or use --mixed_precision bf16."


class OneLineErrors:
    """An argparse mixin: a usage error prints `error: <message>` and a pointer to --help, and exits with 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(BAD_INPUT, f"error: {message} (see `{self.prog} --help`)\n")


class DistillParser(OneLineErrors, HfArgumentParser):
    pass


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
            unknown = sorted(set(config) - {a.dest for a in parser._actions})
            if unknown:
                raise ValueError(f"Unknown keys {unknown} in {known.config}; use the flag names of `--help`.")
            parser.set_defaults(**config)
        return parser.parse_args_into_dataclasses(args=argv, look_for_args_file=False)[0]
    except (ValueError, OSError) as error:  # a bad value, an unknown YAML key, an unreadable --config
        parser.error(str(error))


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


COMMANDS = {"distill": "Distil a dataset with APM: teachers, distillation, evaluation, outputs (flags: "
                       "`hf-distill distill --help`)."}


class CommandParser(OneLineErrors, argparse.ArgumentParser):
    pass


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
        return BAD_INPUT
    argv.remove(command)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv, prog=f"hf-distill {command}")
    return run(lambda: distill(args), debug)
