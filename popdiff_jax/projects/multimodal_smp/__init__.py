"""Multimodal social-media popularity (Meghawat et al., "A Multimodal Approach to Predict
Social Media Popularity", MIPR 2018): regress a post's popularity from 14 CON-SOC features and
an image model's score.

* ``configs``: ``ExperimentConfig``, ``RandomForestConfig`` and the named configs
  (``smp-conv1d``, ``smp-conv1d-multimodal``, ``smp-random-forest``, ``smp-image-model``,
  ``smp-gradient-boosting``, ...), each with the command that runs it and the result it should
  reach.
* ``experiment``: ``inputs`` (the tabular features), ``random_forest``, ``train_conv1d``,
  ``train_and_test``, ``run``.

The Conv1d model is ``popdiff_jax.models.smp``, its loss ``popdiff_jax.losses.masked_mse``, its
step ``popdiff_jax.training.make_train_step``; the image model and gradient boosting are
``popdiff_jax.baselines.regressors``. README.md beside this file lists what is reproduced, every
deviation, and our numbers beside the paper's.
"""
