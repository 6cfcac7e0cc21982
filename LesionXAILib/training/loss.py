"""Segmentation loss for training: binary cross-entropy on logits plus soft Dice on probabilities."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def dice_bce_loss(logits: torch.Tensor, target: torch.Tensor, dice_weight: float = 1.0, smooth: float = 1.0) -> torch.Tensor:
    """Return BCE(logits, target) + dice_weight * (1 - soft Dice) pooled over the whole batch.

    Pooling the Dice over the batch keeps lesion-free patches from producing an undefined term.
    """
    bce = F.binary_cross_entropy_with_logits(logits, target)
    p = torch.sigmoid(logits)
    inter = (p * target).sum()
    dice = (2.0 * inter + smooth) / (p.sum() + target.sum() + smooth)
    return bce + dice_weight * (1.0 - dice)


def binary_lesion_logit(output: torch.Tensor, head: str, lesion_index: int) -> torch.Tensor:
    """Return the (B, 1, ...) logit whose sigmoid is the model's lesion probability (softmax heads: z_l - logsumexp of the others).

    A softmax head's lesion channel alone is not that logit: training it through a sigmoid would fit
    a probability the model never reports.
    """
    if head != "softmax":
        return output[:, lesion_index : lesion_index + 1]
    others = [c for c in range(output.shape[1]) if c != lesion_index]
    return output[:, lesion_index : lesion_index + 1] - torch.logsumexp(output[:, others], dim=1, keepdim=True)
