"""``lesionxai view``: the browser viewer (trame-slicer) — click a lesion, see its explanation and context curve."""

from __future__ import annotations

import argparse
import logging
import socket
import time
from pathlib import Path

from LesionXAILib.errors import ParameterError

NAME = "view"
HELP = "browser viewer: click a lesion to see why it was segmented (serves on 127.0.0.1; no arguments: phantom + demo model)"
log = logging.getLogger("LesionXAILib.cli")

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
# libraries whose INFO messages would bury the viewer's own lines in the terminal
NOISY_LOGGERS = ("trame", "trame_client", "trame_server", "trame_slicer", "trame_rca", "wslink", "aiohttp")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this subcommand's options."""
    from LesionXAILib.cli.common import add_model_arguments
    from LesionXAILib.viewer.server import DEFAULT_HOST, DEFAULT_PORT

    parser.add_argument("--flair", default=None, help="FLAIR volume (reference grid); with --t1. Neither: a phantom demo")
    parser.add_argument("--t1", default=None, help="MPRAGE/T1 volume (resampled onto the FLAIR grid if needed)")
    parser.add_argument("--gt", default=None, help="optional ground-truth lesion mask (enables TP/FP/FN)")
    parser.add_argument("--phantom-seed", type=int, default=None, help="phantom seed when no images are given (default 7)")
    add_model_arguments(parser)
    g = parser.add_argument_group("analysis")
    g.add_argument("--threshold", type=float, default=None, help="probability threshold (default: the model's)")
    g.add_argument("--min-size", type=float, default=3, help="minimum lesion size in voxels (default 3)")
    g.add_argument("--connectivity", type=int, choices=(6, 18, 26), default=26, help="voxel connectivity of lesion instances (default 26)")
    from LesionXAILib.explain.registry import available_methods, method_default

    samples = method_default("smoothgrad", "samples")
    g.add_argument("--methods", default="smoothgrad,gradcampp",
                   help=f"comma-separated, from: {', '.join(available_methods())} (default smoothgrad,gradcampp)")  # fmt: skip
    g.add_argument("--samples", type=int, default=samples, help=f"SmoothGrad noise samples per lesion (default {samples})")
    g.add_argument("--seed", type=int, default=0, help="SmoothGrad noise seed (default 0)")
    g.add_argument("--max-radius-mm", type=float, default=15.0, help="largest context radius probed (default 15 mm)")
    g.add_argument(
        "--precompute", type=int, default=0, metavar="N",
        help="compute the N largest lesions in the background while idle, so clicks on them are instant "
        "(default 0; costs CPU while it runs and memory for the cached maps)",
    )  # fmt: skip
    g.add_argument("--library", default=None, metavar="LIB",
                   help="lesion library (`lesionxai library build`, `cohort --library`) built with the same model: "
                        "a 'similar lesions' panel lists the selected lesion's nearest library lesions")  # fmt: skip
    s = parser.add_argument_group("server")
    s.add_argument("--host", default=DEFAULT_HOST, help=f"address to bind (default {DEFAULT_HOST}: this machine only)")
    s.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0 picks a free one)")
    s.add_argument("--no-3d", dest="three_d", action="store_false", help="no 3D view of the lesion surfaces (slice views only)")


def check_port(host: str, port: int) -> None:
    """Raise ParameterError if ``port`` is out of range or cannot be bound on ``host`` (checked before loading anything)."""
    if not 0 <= port <= 65535:
        raise ParameterError(f"--port must be in 0..65535, got {port}")
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ParameterError(f"--host '{host}': cannot be resolved ({exc.strerror})") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise ParameterError(
                f"cannot listen on {host}:{port} ({exc.strerror}); choose another --port (0 picks a free one)"
            ) from None


def session_settings_from_args(args: argparse.Namespace):
    """Return the bridge's SessionSettings from the analysis options."""
    from LesionXAILib.session.settings import SessionSettings
    from LesionXAILib.cli.common import parse_methods

    if args.samples < 1:
        raise ParameterError(f"--samples must be >= 1, got {args.samples}")
    if args.max_radius_mm <= 0:
        raise ParameterError(f"--max-radius-mm must be > 0, got {args.max_radius_mm}")
    return SessionSettings(
        methods=parse_methods(args.methods),
        threshold=args.threshold,
        min_size=args.min_size,
        connectivity=args.connectivity,
        samples=args.samples,
        seed=args.seed,
        max_radius_mm=args.max_radius_mm,
    )


def run(args: argparse.Namespace) -> int:
    """Check the inputs, segment the subject, then serve the viewer until interrupted; return the exit code."""
    from LesionXAILib.cli.common import load_model_from_args, progress_for
    from LesionXAILib.viewer.inputs import check_inputs, check_model_path

    t_start = time.perf_counter()
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().level))
    # cheap checks first: a typo must not cost a model load or leave a half-started server
    inputs = check_inputs(args.flair, args.t1, args.gt, args.phantom_seed)
    if not args.weights:
        check_model_path(args.model)
    check_port(args.host, args.port)
    if args.library is not None and not Path(args.library).is_dir():
        raise ParameterError(f"--library '{args.library}' is not a folder; build a library with `lesionxai library build`")
    if args.precompute < 0:
        raise ParameterError(f"--precompute must be >= 0, got {args.precompute}")
    if args.host not in LOOPBACK_HOSTS:
        log.warning("binding to %s: anyone who can reach this machine and has the printed URL (its secret) can open the viewer", args.host)
    settings = session_settings_from_args(args)
    model = load_model_from_args(args)

    from LesionXAILib.viewer.app import LesionViewer
    from LesionXAILib.viewer.server import serve
    from LesionXAILib.viewer.subject import load_subject_nodes, start_session, summary_text

    viewer = LesionViewer(show_3d=args.three_d, title=f"LesionXAI · {inputs.describe()}")
    callback, close = progress_for(args, "load" if not inputs.is_phantom else "phantom")
    try:
        nodes = load_subject_nodes(viewer.scene, inputs, progress=callback)
    finally:
        close()
    callback, close = progress_for(args, "segment")
    try:
        writer = start_session(viewer.scene, nodes, model=model, settings=settings, progress=callback)
    finally:
        close()
    summary = summary_text(writer.session)
    viewer.attach_session(writer, summary)
    if args.library is not None:  # a library of another model is refused in the panel, which says why
        viewer.cases.attach_library(args.library)
    viewer.precompute_on_ready(args.precompute)
    log.info("%s: %s; ready in %.1f s, starting the server", inputs.describe(), summary, time.perf_counter() - t_start)
    serve(viewer, host=args.host, port=args.port)
    return 0
