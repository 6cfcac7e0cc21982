"""Entry point of the ``lesionxai`` console script: discovers subcommands and reports errors in one line."""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
import traceback
from pathlib import Path
from types import ModuleType
from typing import Optional, Sequence

from LesionXAILib import __version__
from LesionXAILib.cli.common import add_global_options
from LesionXAILib.cli.validation import one_line, validate_arguments
from LesionXAILib.errors import Cancelled, LesionXAIError
from LesionXAILib.image_checks import set_max_voxels


def discover_commands() -> list[ModuleType]:
    """Return the subcommand modules (each defines NAME, HELP, add_arguments(parser), run(args) -> int)."""
    from LesionXAILib.cli import commands

    modules = []
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        modules.append(importlib.import_module(f"{commands.__name__}.{info.name}"))
    return sorted(modules, key=lambda m: m.NAME)


def build_parser() -> argparse.ArgumentParser:
    """Return the top-level argument parser with every discovered subcommand."""
    parser = argparse.ArgumentParser(
        prog="lesionxai",
        description="Instance-level explanations of 3D U-Net MS lesion segmentation.",
    )
    parser.add_argument("--version", action="version", version=f"lesionxai {__version__}")
    add_global_options(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in discover_commands():
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        add_global_options(p, in_subcommand=True)  # `lesionxai phantom ... -q` as well as `lesionxai -q phantom ...`
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line and return its exit status (0 ok, 1 failure, 2 bad input, 130 cancelled)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # kept for records that must reproduce the run (model cards), whether called from a shell or from Python
    args._argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="lesionxai: %(message)s",
    )
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    out = _new_output_folder(args)
    try:
        from LesionXAILib.presets import apply_preset

        apply_preset(args)  # --preset values and built-in defaults fill the options left unset
        validate_arguments(parser, args)  # every number checked before any work or output folder
        if getattr(args, "max_image_voxels", None) is not None:
            set_max_voxels(args.max_image_voxels)
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("lesionxai: interrupted", file=sys.stderr)
        _remove_if_empty(out)
        return 130
    except Cancelled as exc:
        print(f"lesionxai: {exc}", file=sys.stderr)
        _remove_if_empty(out)
        return 130
    except LesionXAIError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"lesionxai: error: {exc if args.debug else one_line(exc)}", file=sys.stderr)
        _remove_if_empty(out)
        return 2
    except Exception as exc:  # last resort: still one line unless --debug
        if args.debug:
            traceback.print_exc()
        text = exc if args.debug else one_line(exc)
        print(f"lesionxai: error: {type(exc).__name__}: {text} (run with --debug for details)", file=sys.stderr)
        _remove_if_empty(out)
        return 1


def _new_output_folder(args: argparse.Namespace) -> Optional[Path]:
    """Return --out when this run would create it (it does not exist yet), else None."""
    out = getattr(args, "out", None)
    if not isinstance(out, str) or not out:
        return None
    p = Path(out)
    return None if p.exists() else p


def _remove_if_empty(out: Optional[Path]) -> None:
    """Remove an output folder this run created if a failure left it empty (a failed run leaves no trace)."""
    if out is None:
        return
    try:
        if out.is_dir() and not any(out.iterdir()):
            out.rmdir()
    except OSError:
        pass


if __name__ == "__main__":
    raise SystemExit(main())
