"""Diffusion-LSTM (Hu et al., WSDM 2018): predicting and generating re-share trees node by node.

* ``configs``: ``TreePredictionConfig`` (``data`` / ``model`` / ``train`` / ``eval``) and the
  named configs (``diffusion-lstm``, ``social-only``, ``content-only``, ``fc``, ``random``, the
  paper's recipe and a tiny test config), each with the command that runs it and the result it
  should reach.
* ``data``: ``prepare``: the Twitter15 or synthetic trees split 6:1:1, users mapped to
  prototypes by k-means, the targets' class counts.
* ``experiment``: ``train`` (two SGD phases), ``evaluate_nodes`` (Table 1),
  ``evaluate_generation`` (Table 2), ``run`` (result rows).

The model is ``popdiff_jax.models.diffusion_lstm`` (its level-wise tree LSTM
``popdiff_jax.nn.tree_lstm``), the loss ``popdiff_jax.losses.weighted_bce``, the step
``popdiff_jax.training.make_train_step``, generation ``popdiff_jax.simulate.trees``.
README.md beside this file lists what is reproduced, every deviation, and our numbers beside
the paper's.
"""
