"""Models from elsewhere: input contracts, model spaces, buildable architectures and model formats.

How a loader builds a LesionModel with a contract (what every format loader does):

1. Describe the network's input space in an :class:`~LesionXAILib.models.contract.InputContract`
   (``axes``: ``"kji"`` SimpleITK order, ``"ijk"`` nibabel / MONAI ``LoadImage`` order, or any
   permutation such as nnU-Net's ``transpose_forward``; ``orientation``: ``"as-stored"`` or an axis
   code like ``"RAS"``; ``target_spacing``: mm per *model* axis or None; ``size_divisor``;
   ``crop_rule``: ``"exact"``, ``"calibrate"`` or ``"whole-volume"``).
2. Put it in a :class:`~LesionXAILib.model_config.ModelConfig` with the rest of the contract:
   ``input_order`` (channel names in network order, e.g. ``("FLAIR", "MPRAGE")``), ``normalization``
   (a name in :data:`LesionXAILib.normalization.NORMALIZERS`; register a new function there for a
   format's own scheme), ``head`` / ``lesion_index`` / ``out_channels``, ``roi_size`` / ``overlap`` (the
   model's window, in its own axis order), ``threshold``, ``cam_layer``, and ``network`` (a name; one of
   :data:`LesionXAILib.models.architectures.ARCHITECTURES` if LesionXAI can rebuild it from the config,
   else a label such as ``"nnunet"``).
3. Build or load the network (weights with ``torch.load(..., weights_only=True)``; code only when
   ``request.trust``) and return ``LesionModel(network, config, source=str(path))`` in eval mode.
   The network takes (B, C, *model axes) and returns (B, C_out, *same shape) logits.

``LesionModel.forward`` then maps LesionXAI's canonical input (FLAIR grid, k, j, i) into that space
and its output back, so segmentation, explanations, probes, metrics, cohort, Slicer and the viewer
honour the contract without knowing it. Loaders are registered in :data:`formats.FORMATS` as
``"module:function"`` taking a :class:`formats.LoadRequest`.
"""
