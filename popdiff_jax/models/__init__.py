"""The models of the five papers, one file each, built by one function: ``init(config, key)``.

=================  =====================================  ======================================
name               config (file)                          batch -> output of ``Model.apply``
=================  =====================================  ======================================
``ndm``            ``NDMConfig`` (``ndm.py``)             ``CascadeBatch`` -> [B, L, U] scores
``lstm``           ``LSTMConfig`` (``lstm.py``)           ``CascadeBatch`` -> [B, L, U] scores
``diffusion_lstm`` ``DiffusionLSTMConfig``                ``TreeBatch`` -> [N, k + 1] logits
                   (``diffusion_lstm.py``)
``dual_attention`` ``DualAttentionConfig``                ``PostBatch`` -> dict (logit, prob,
                   (``dual_attention.py``)                attention, aux_logits)
``fusion_dnn``     ``FusionDNNConfig`` (``fusion_dnn.py``) ``PostBatch`` -> [B] regression
``smp_conv1d``     ``SMPConv1dConfig`` (``smp.py``)       ``PostBatch`` -> [B] regression
=================  =====================================  ======================================

See ``registry`` for :class:`Model` and :class:`Variables`.
"""

from popdiff_jax.models.registry import (MODEL_NAMES, Model, Variables, config_class, init,
                                         model_class)

__all__ = ["MODEL_NAMES", "Model", "Variables", "config_class", "init", "model_class"]
