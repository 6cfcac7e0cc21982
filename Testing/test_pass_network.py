"""The folded channels-last network copy gradient passes run on (explain/pass_network.py).

References are plain autograd on the original network, computed here: the copy must give the same
gradients up to float rounding, leave the user's network untouched, and follow weight changes.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from explain_fixtures import _randomise_norm, box_mask, synthetic_image, tiny_unet
from LesionXAILib.explain.pass_network import fold_batch_norm, pass_model
from LesionXAILib.explain.vjp import target_gradients
from LesionXAILib.lesion_model import LesionModel
from LesionXAILib.model_config import ModelConfig

SHAPE = (16, 16, 16)


def autograd_sum_gradient(model: LesionModel, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Return d(sum of lesion logits over mask)/dx of the original network, batch by batch."""
    x = x.detach().clone().requires_grad_(True)
    z = model.lesion_logit(model.network(x))[:, 0]
    (g,) = torch.autograd.grad((z * mask.to(z.dtype)).sum(), x)
    return g


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
def test_gradients_on_the_copy_equal_autograd_on_the_original(dtype, tol):
    model = tiny_unet(seed=3, dtype=dtype, head="softmax")
    x = torch.from_numpy(np.stack([synthetic_image(SHAPE, s) for s in (1, 2)])).to(dtype)
    masks = torch.from_numpy(np.stack([box_mask(SHAPE, (6, 6, 6), (9, 8, 9)), box_mask(SHAPE, (2, 3, 3), (4, 4, 5))]))
    got = target_gradients(model, x, masks, "sum", batch_size=2)
    for k in range(2):
        assert rel_err(got[k], autograd_sum_gradient(model, x, masks[k])) < tol


def test_batch_norm_is_folded_and_the_users_network_is_untouched():
    model = tiny_unet(seed=4, dtype=torch.float32)
    before = {k: v.clone() for k, v in model.network.state_dict().items()}
    n_norms = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.network.modules())
    fast = pass_model(model)
    assert fast is not model and fast.network is not model.network
    assert n_norms > 0 and not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in fast.network.modules())
    after = model.network.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert pass_model(model) is fast  # cached while the weights are unchanged


def test_a_weight_change_rebuilds_the_copy():
    model = tiny_unet(seed=5, dtype=torch.float64)
    x = torch.from_numpy(synthetic_image(SHAPE, 7))[None]
    mask = torch.from_numpy(box_mask(SHAPE, (6, 6, 6), (9, 9, 9)))[None]
    first = pass_model(model)
    with torch.no_grad():
        next(p for p in model.network.parameters() if p.ndim == 5).mul_(1.7)
    assert pass_model(model) is not first
    got = target_gradients(model, x, mask, "sum")[0]
    assert rel_err(got, autograd_sum_gradient(model, x, mask[0])) < 1e-10


def test_a_kept_layer_keeps_its_own_output():
    model = tiny_unet(seed=6, dtype=torch.float64)
    conv = next(n for n, m in model.network.named_modules() if isinstance(m, nn.Conv3d))
    fast = pass_model(model, keep=(conv,))
    outputs = []
    for net in (model.network, fast.network):
        layer = dict(net.named_modules())[conv]
        h = layer.register_forward_hook(lambda m, a, out: outputs.append(out.detach().contiguous()))
        net(torch.from_numpy(synthetic_image(SHAPE, 8))[None])
        h.remove()
    assert torch.allclose(outputs[0], outputs[1], rtol=1e-12, atol=1e-12)


class HookedNet(nn.Module):
    """A conv + batch norm in a Sequential whose conv output a forward hook squares: folding would change it."""

    def __init__(self) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.Conv3d(2, 3, 3, padding=1), nn.BatchNorm3d(3), nn.PReLU())
        self.block[0].register_forward_hook(lambda m, a, out: out * out)
        self.head = nn.Conv3d(3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(x))


def test_a_copy_that_disagrees_with_the_original_is_not_used():
    torch.manual_seed(0)
    net = HookedNet()
    _randomise_norm(net, 0)
    assert fold_batch_norm(__import__("copy").deepcopy(net)) == 1  # structurally foldable ...
    cfg = ModelConfig(name="hooked", channels=(3,), strides=(), out_channels=1, head="sigmoid", lesion_index=0)
    model = LesionModel(net.double(), cfg).eval()
    fast = pass_model(model)  # ... but the check on a random input refuses the folded copy
    assert any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in fast.network.modules())
    x = torch.from_numpy(synthetic_image((8, 8, 8), 9))[None]
    mask = torch.from_numpy(box_mask((8, 8, 8), (3, 3, 3), (5, 5, 5)))[None]
    got = target_gradients(model, x, mask, "sum")[0]
    assert rel_err(got, autograd_sum_gradient(model, x, mask[0])) < 1e-10
