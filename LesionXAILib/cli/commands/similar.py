"""``lesionxai similar``: each lesion of a subject beside the k most similar lesions of a library (case-based explanation)."""

from __future__ import annotations

import argparse
import logging

from LesionXAILib.cli.common import (
    add_input_arguments,
    add_model_arguments,
    add_output_arguments,
    add_segmentation_arguments,
    parse_instances,
)
from LesionXAILib.cli.commands.library import add_embedding_arguments, layers_from_args
from LesionXAILib.errors import ParameterError

NAME = "similar"
HELP = "lesions like this one: the k nearest library lesions of every lesion (similar_lesions.csv/json/png)"
log = logging.getLogger("LesionXAILib.cli")
MAX_K = 1000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this subcommand's options."""
    add_input_arguments(parser)
    parser.add_argument("--library", required=True, help="lesion library folder (`lesionxai library build`)")
    add_output_arguments(parser)
    parser.add_argument("--instances", default="all", help="instance ids to look up, e.g. 3,7 (default all)")
    parser.add_argument("--k", type=int, default=5, help="neighbours per lesion (default 5)")
    parser.add_argument("--subject", default="query", help="name shown for this subject (default 'query')")
    parser.add_argument("--exclude-subject", default=None,
                        help="leave this library subject out of the search (e.g. the query subject itself)")  # fmt: skip
    add_embedding_arguments(parser)
    add_model_arguments(parser)
    add_segmentation_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Segment the subject, embed its lesions and write their nearest library lesions; return the exit code."""
    from LesionXAILib.cli.common import load_model_from_args, segmentation_settings_from_args
    from LesionXAILib.image_io import check_output_dir, load_pair, read_label_image
    from LesionXAILib.library.build import library_identity, result_table
    from LesionXAILib.library.embedding import EmbeddingSettings
    from LesionXAILib.library.query import find_similar, open_checked, write_similar
    from LesionXAILib.library.store import LesionLibrary
    from LesionXAILib.segmentation import segment

    if not 1 <= args.k <= MAX_K:
        raise ParameterError(f"--k must be in 1..{MAX_K}, got {args.k}")
    ids = parse_instances(args.instances)
    layers = layers_from_args(args)
    library = LesionLibrary.open(args.library)  # fails fast on a wrong path, before any image is read
    if not layers:  # the library's layers unless the user names others (then the identity check decides)
        layers = tuple(library.identity.get("layers") or ())
    settings = EmbeddingSettings(layers=layers)
    pair = load_pair(args.flair, args.t1)
    gt = read_label_image(args.gt, pair.geometry) if args.gt else None
    protected = [args.flair, args.t1, args.gt]
    out = check_output_dir(args.out, protected, args.allow_input_dir, create=False)
    model = load_model_from_args(args)
    identity = library_identity(model, settings)
    library, table = open_checked(args.library, identity)
    if args.exclude_subject:
        if args.exclude_subject not in library.subjects():
            raise ParameterError(f"--exclude-subject: '{args.exclude_subject}' is not in library '{args.library}'")
        table = library.load(exclude={args.exclude_subject})
        if len(table) == 0:
            raise ParameterError(f"lesion library '{args.library}' holds no lesion besides subject '{args.exclude_subject}'")
    result = segment(pair, model, segmentation_settings_from_args(args), gt)
    if ids is not None:
        for i in ids:
            result.instances.get(i)  # unknown ids fail here, naming the valid ones
    queries = result_table(model, args.subject, result, settings, ids)
    similar = find_similar(table, queries, args.k)
    from LesionXAILib.run_identity import run_ids

    meta = {**run_ids(result.instances.labels), "library": str(library.path), "subject": args.subject, "k": args.k, "library_lesions": len(table),
            "excluded_subject": args.exclude_subject, "weights_sha256": identity["weights_sha256"], "layers": identity["layers"],
            "inputs": {"flair": str(args.flair), "t1": str(args.t1), "gt": args.gt}}  # fmt: skip
    paths = write_similar(out, similar, meta, protected)
    log.info("%d lesions, %d neighbours each, from %d library lesions -> %s", len(queries), min(args.k, len(table)), len(table), paths["json"])
    return 0
