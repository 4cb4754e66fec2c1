"""Dual attention (Zhang, Li, Chen, Zhou & Luo 2019, "How to Become Instagram Famous: Post
Popularity Prediction with Dual-Attention"): is a post popular for its own author (top vs bottom
quarter of the author's posts by likes)?

* ``configs``: ``ExperimentConfig`` and the named configs (``dual-attention`` and every baseline
  and ablation of Tables I-II: ``dual-attention-visual``, ``-textual``, ``-early-fusion``, ...),
  each with the command that runs it and the result it should reach.
* ``experiment``: ``train``, ``predict``, ``train_and_test``, ``run``.

The model is ``popdiff_jax.models.dual_attention``, the loss ``popdiff_jax.losses.
dual_attention_loss``, the step ``popdiff_jax.training.make_train_step``, the posts
``popdiff_jax.data.posts``. README.md beside this file lists what is reproduced, every deviation,
and our numbers beside the paper's.
"""
