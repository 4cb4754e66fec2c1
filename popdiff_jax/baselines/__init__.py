"""Baselines that are no paper's model: the IC-based models (Embedded IC, NetRate), the
popularity floors of next-user and popularity prediction, DeepWalk, k-means, the node-by-node
tree LSTM."""
