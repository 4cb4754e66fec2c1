"""NDM: the next infected user by attention over earlier users and a window convolution.

Yang, Sun, Liu, Han, Liu & Luan, "Neural Diffusion Model for Microscopic Cascade Study", IEEE
TKDE.

* ``configs``: ``NextUserConfig`` and the named configs (``ndm``, ``lstm``, ``popularity``,
  ``ndm-prior``, ...), each with the command that runs it and the result it should reach.
* ``experiment``: ``train``, ``run``, ``result_row``, ``load_trained``, ``test_metrics``.
* ``protocol``: the paper's Monte Carlo evaluation (macro/micro F1, cascade-size MSLE).
* ``social``: NDM+SN's DeepWalk embedding of the social graph.
* ``analysis``: parameter sensitivity (Fig. 8) and the W^C norms (Table 4).
* ``tables``: the result files, one ``popdiff reproduce`` command each (``ndm``,
  ``ndm-protocol``, ``ndm-social``, ``ndm-sensitivity``, ``ndm-norms``, ``ndm-small-sets``,
  ``ndm-cooccurrence``, ``ic-baselines``).

The model is ``popdiff_jax.models.ndm``, the loss ``popdiff_jax.losses.next_user_nll``, the step
``popdiff_jax.training.make_train_step``. README.md beside this file lists what is reproduced,
every deviation, and our numbers beside the paper's.
"""
