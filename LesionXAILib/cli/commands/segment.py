"""``lesionxai segment``: probability map, lesion instances and their table for one subject."""

from __future__ import annotations

import argparse
import logging

from LesionXAILib.cli.common import (
    add_subject_arguments,
    segment_subject_from_args,
)

NAME = "segment"
HELP = "segment lesions and split them into instances (writes probability, instances.nii.gz/csv/json)"
log = logging.getLogger("LesionXAILib.cli")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this subcommand's options."""
    add_subject_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Segment one subject and write the outputs; return the exit code."""
    subject = segment_subject_from_args(args)
    result = subject.result
    inst = result.instances
    msg = f"{len(inst.instances)} instances in {result.seconds:.1f} s"
    if inst.metrics:
        m = inst.metrics
        msg += f" (TP {m.tp}, FP {m.fp}, FN {m.fn}; lesion F1 {m.f1:.3f}, Dice {m.dice:.3f})"
    log.info("%s -> %s", msg, subject.out)
    return 0
