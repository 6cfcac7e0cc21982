"""Which layers of the segmenter a lesion embedding is read from: names, aliases and per-network defaults.

A layer is given by module name relative to the network (``model.1.submodule.2``; a leading
``network.`` or DataParallel ``module.`` is dropped) or by an alias resolved for the network at hand:

  bottleneck   the deepest block (MONAI UNet: the innermost skip connection's submodule; DynUNet:
               ``bottleneck``; Swin UNETR: ``encoder10``)
  decoderN     the N-th decoder block counted from full resolution (decoder1 = the block that outputs
               at half resolution in a MONAI UNet; DynUNet ``upsamples`` counted the same way;
               Swin UNETR ``decoderN``)

Default (``DEFAULT_ALIASES``): ``decoder1`` alone, chosen by measurement on the demo model
(benchmarks/bench_similar.py, held-out phantoms; table in README "Similar lesions"): the neighbours'
FP share predicted FP vs TP with AUC 0.84 there, against 0.61 for the bottleneck, 0.61 for decoder2
and 0.76 for bottleneck + decoder1. Networks without aliases (nnU-Net folders, TorchScript) need
``--layers`` with module names.
"""

from __future__ import annotations

from typing import Optional, Sequence

from torch import nn

from LesionXAILib.errors import ParameterError
from LesionXAILib.lesion_model import LesionModel

DEFAULT_ALIASES = ("decoder1",)


def _get(network: nn.Module, name: str) -> Optional[nn.Module]:
    try:
        return network.get_submodule(name)
    except AttributeError:
        return None


def unet_aliases(network: nn.Module) -> dict[str, str]:
    """Return {alias: module name} for a MONAI UNet (nested SkipConnections under ``model``), or {} for other networks."""
    from monai.networks.layers import SkipConnection

    chain, path = [], "model.1"
    while isinstance(_get(network, path), SkipConnection):
        chain.append(path)
        path += ".submodule.1"
    if not chain:
        return {}
    aliases = {"bottleneck": chain[-1] + ".submodule"}
    for n, skip in enumerate(chain[:-1], start=1):
        aliases[f"decoder{n}"] = skip + ".submodule.2"  # the up block that closes this skip level
    return aliases


def network_aliases(network: nn.Module) -> dict[str, str]:
    """Return {alias: module name} for the networks LesionXAI builds (MONAI UNet, DynUNet, Swin UNETR)."""
    aliases = unet_aliases(network)
    if aliases:
        return aliases
    names = {n for n, _ in network.named_modules() if n}
    if "bottleneck" in names and "upsamples" in names:  # MONAI DynUNet: upsamples run deepest first
        ups = sorted((n for n in names if n.startswith("upsamples.") and n.count(".") == 1), key=lambda s: int(s.split(".")[1]))
        return {"bottleneck": "bottleneck", **{f"decoder{n}": u for n, u in enumerate(reversed(ups), start=1)}}
    if "encoder10" in names:  # MONAI SwinUNETR
        return {"bottleneck": "encoder10", **{f"decoder{n}": f"decoder{n}" for n in range(1, 6) if f"decoder{n}" in names}}
    return {}


def resolve_layers(model: LesionModel, layers: Optional[Sequence[str]] = None) -> tuple[tuple[str, ...], dict[str, nn.Module]]:
    """Return (module names, {name: module}) for ``layers`` (aliases or module names; None: the default aliases)."""
    network = model.network
    aliases = network_aliases(network)
    wanted = tuple(layers) if layers else DEFAULT_ALIASES
    names: list[str] = []
    for raw in wanted:
        key = str(raw).strip()
        key = key[len("module.") :] if key.startswith("module.") else key
        key = key[len("network.") :] if key.startswith("network.") else key
        if key in aliases:
            key = aliases[key]
        elif not layers and not aliases:
            raise ParameterError(
                f"no default embedding layers for this network ({type(network).__name__}); name them with --layers "
                "(module names, comma separated)"
            )
        module = _get(network, key) if key else None
        if module is None or module is network:
            known = ", ".join(f"{a}={n}" for a, n in aliases.items()) or "none for this network"
            raise ParameterError(f"embedding layer '{raw}' does not exist in the network (aliases: {known})")
        if key not in names:
            names.append(key)
    return tuple(names), {n: _get(network, n) for n in names}
