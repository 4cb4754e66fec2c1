"""Layers shared by the models: each defined once here.

* ``dropout``: inverted dropout with an explicit key.
* ``lstm_cell``, ``lstm_scan``: the LSTM cell (gates ``i, f, g, o``) and its scan over sequences.
* ``CausalSelfAttention``: NDM's multi-head attention over earlier users (Eqs. 3-5).
* ``window_stack``, ``window_conv``: NDM's window convolution (Eq. 7).
* ``masking``: the infected-user masks of the next-user softmax.
* ``streaming_softmax``: the masked softmax over users in blocks (the lean loss and metrics).
* ``tree_lstm``: the level-wise top-down tree LSTM (Diffusion-LSTM Eq. 1).
"""

from popdiff_jax.nn.attention import CausalSelfAttention
from popdiff_jax.nn.dropout import dropout
from popdiff_jax.nn.lstm import lstm_cell, lstm_scan
from popdiff_jax.nn.tree_lstm import (LEVELWISE_IMPLS, chunk_runs, levelwise_tree_lstm,
                                      levelwise_tree_lstm_by_level, levelwise_tree_lstm_inputs,
                                      levelwise_tree_lstm_inputs_by_level)
from popdiff_jax.nn.window import window_conv, window_stack

__all__ = ["CausalSelfAttention", "dropout", "lstm_cell", "lstm_scan", "window_conv",
           "window_stack", "LEVELWISE_IMPLS", "chunk_runs", "levelwise_tree_lstm",
           "levelwise_tree_lstm_by_level", "levelwise_tree_lstm_inputs",
           "levelwise_tree_lstm_inputs_by_level"]
