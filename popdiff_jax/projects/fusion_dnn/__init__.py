"""Multi-feature fusion DNN (Ding, Wang & Wang, "Social media popularity prediction: a
multiple feature fusion approach with deep neural networks", ACM MM 2019): regress a post's
popularity from deep image, deep text and numerical features.

* ``configs``: ``ExperimentConfig`` and the named configs (``fusion-dnn``, the univariate study
  ``fusion-dnn-only-<group>`` and the ablation ``fusion-dnn-drop-<group>``), each with the
  command that runs it and the result it should reach.
* ``experiment``: ``column_keep`` (the feature groups), ``train``, ``predict``,
  ``train_and_test``, ``run``.

The model is ``popdiff_jax.models.fusion_dnn``, the loss ``popdiff_jax.losses.masked_mse``, the
step ``popdiff_jax.training.make_train_step``, the posts ``popdiff_jax.data.posts``. README.md
beside this file lists what is reproduced, every deviation, and our numbers beside the paper's.
"""
