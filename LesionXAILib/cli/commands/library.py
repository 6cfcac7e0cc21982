"""``lesionxai library``: build a lesion library (from a cohort folder or one subject) and summarise it by prototypes."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from LesionXAILib.cli.common import add_image_limit_argument, add_model_arguments, add_segmentation_arguments
from LesionXAILib.errors import ParameterError

NAME = "library"
HELP = "lesion library for case-based explanations: build (from a cohort or one subject), prototypes"
log = logging.getLogger("LesionXAILib.cli")
MAX_CLUSTERS = 1000


def add_embedding_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --layers (embedding layers: aliases or module names)."""
    parser.add_argument("--layers", default=None,
                        help="embedding layers, comma separated: aliases (bottleneck, decoder1, decoder2, ...) or module names; "
                             "default: the network's documented default (README 'Similar lesions')")  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the build / prototypes sub-commands."""
    sub = parser.add_subparsers(dest="library_command", metavar="ACTION", required=True)
    build = sub.add_parser("build", help="add lesions to a library: every finished subject of --cohort, or one subject (--flair/--t1)")
    build.add_argument("--out", required=True, help="library folder (created if missing; subjects already in it are replaced)")
    build.add_argument("--cohort", default=None, help="cohort output folder (`lesionxai cohort --out`): all its finished subjects")
    build.add_argument("--flair", default=None, help="one subject's FLAIR (with --t1 and --subject)")
    build.add_argument("--t1", default=None, help="one subject's MPRAGE/T1")
    build.add_argument("--gt", default=None, help="one subject's ground-truth lesion mask (TP/FP/FN statuses)")
    build.add_argument("--subject", default=None, help="name of the subject added with --flair/--t1")
    add_image_limit_argument(build)
    add_embedding_arguments(build)
    add_model_arguments(build)
    add_segmentation_arguments(build)
    proto = sub.add_parser("prototypes", help="cluster a library (k-means) and show each cluster's typical lesions and TP/FP mix")
    proto.add_argument("--library", required=True, help="library folder")
    proto.add_argument("--out", required=True, help="output folder (prototypes.json / .csv / .png)")
    proto.add_argument("--clusters", type=int, default=8, help="number of clusters (default 8)")
    proto.add_argument("--seed", type=int, default=0, help="k-means seed (default 0)")


def layers_from_args(args: argparse.Namespace) -> tuple[str, ...]:
    """Return the --layers names (empty: the default)."""
    text = getattr(args, "layers", None) or ""
    return tuple(p.strip() for p in text.split(",") if p.strip())


def run(args: argparse.Namespace) -> int:
    """Run the chosen library action; return the exit code."""
    if args.library_command == "prototypes":
        return _prototypes(args)
    return _build(args)


def _build(args: argparse.Namespace) -> int:
    from LesionXAILib.library.embedding import EmbeddingSettings

    settings = EmbeddingSettings(layers=layers_from_args(args))
    single = any(getattr(args, k) for k in ("flair", "t1", "gt", "subject"))
    if args.cohort and single:
        raise ParameterError("give either --cohort or one subject (--flair, --t1, --subject), not both")
    if args.cohort:
        return _build_cohort(args, settings)
    if not (args.flair and args.t1 and args.subject):
        raise ParameterError("library build needs --cohort OUT, or --flair, --t1 and --subject for one subject")
    return _build_subject(args, settings)


def _build_cohort(args: argparse.Namespace, settings) -> int:
    from LesionXAILib.cli.common import load_model_from_args
    from LesionXAILib.library.build import build_from_cohort, check_cohort_model, cohort_model_record

    record = cohort_model_record(args.cohort)
    model_record = record.get("model") or {}
    if not (args.model or args.weights) and model_record.get("path"):
        args.model = model_record["path"]  # the cohort's own model, unless the user names one
        args.config = args.config or model_record.get("config")
    check_cohort_model(record, args.model or args.weights)
    model = load_model_from_args(args)
    library, counts = build_from_cohort(args.cohort, args.out, model, settings,
                                        progress=lambda n, total, sid: log.info("library: %s (%d/%d)", sid, n, total))  # fmt: skip
    log.info("library %s: %d lesions of %d subjects added (%d subjects in all)", library.path, sum(counts.values()),
             len(counts), len(library.subjects()))  # fmt: skip
    return 0


def _build_subject(args: argparse.Namespace, settings) -> int:
    from LesionXAILib.cli.common import load_model_from_args, segmentation_settings_from_args
    from LesionXAILib.cohort.subjects import check_subject_id
    from LesionXAILib.image_io import load_pair, read_label_image
    from LesionXAILib.library.build import add_subject, library_identity
    from LesionXAILib.library.store import LesionLibrary
    from LesionXAILib.segmentation import segment

    check_subject_id(args.subject, "--subject: ")
    pair = load_pair(args.flair, args.t1)
    gt = read_label_image(args.gt, pair.geometry) if args.gt else None
    _check_not_input(Path(args.out), [args.flair, args.t1, args.gt])
    model = load_model_from_args(args)
    library = LesionLibrary.create_or_open(args.out, library_identity(model, settings))
    result = segment(pair, model, segmentation_settings_from_args(args), gt)
    table = add_subject(library, model, args.subject, result, settings)
    log.info("library %s: subject %s, %d lesions (%d subjects in all)", library.path, args.subject, len(table), len(library.subjects()))
    return 0


def _check_not_input(out: Path, inputs) -> None:
    resolved = out.resolve()
    for p in inputs:
        if p and Path(p).resolve() == resolved:
            raise ParameterError(f"--out '{out}' is an input file; choose a library folder")


def _prototypes(args: argparse.Namespace) -> int:
    from LesionXAILib.library.prototypes import prototypes, write_prototypes
    from LesionXAILib.library.store import LesionLibrary

    if not 1 <= args.clusters <= MAX_CLUSTERS:
        raise ParameterError(f"--clusters must be in 1..{MAX_CLUSTERS}, got {args.clusters}")
    library = LesionLibrary.open(args.library)
    table = library.load()
    summary = prototypes(table, args.clusters, args.seed)
    meta = {"library": str(library.path), "weights_sha256": library.identity.get("weights_sha256"),
            "layers": library.identity.get("layers"), "clusters_requested": args.clusters, "seed": args.seed,
            "lesions": len(table)}  # fmt: skip
    paths = write_prototypes(args.out, table, summary, meta)
    log.info("%d clusters of %d lesions -> %s", len(summary), len(table), paths["json"])
    return 0
