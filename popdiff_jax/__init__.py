"""popdiff_jax: functional JAX models of information diffusion and social-media popularity.

The flat public API: data (cascade readers and batches), models (flax NNX modules used as pure
functions through ``nnx.split`` / ``nnx.merge``), training, metrics and simulation. Everything here
imports without tensorflow-datasets (the TFDS builders live in ``popdiff_jax.data.tfds_builders``).
"""

from popdiff_jax._errors import DataError
from popdiff_jax.data.batching import CascadeBatch, bucket_lengths, make_batches
from popdiff_jax.data.cascades import (DATASETS, PAD, TERMINATE, Cascade, CascadeDataset, UserVocab,
                                       load_dataset, split_cascades)
from popdiff_jax.experiments.next_user import NextUserConfig, Trained, load_trained
from popdiff_jax.experiments.next_user import run as run_next_user
from popdiff_jax.experiments.next_user import train as train_next_user
from popdiff_jax.data.synthetic_trees import SyntheticTreesConfig, make_synthetic_trees
from popdiff_jax.data.trees import (CleaningReport, Tree, TreeBatch, TreeExample,
                                    bucket_tree_batches, make_tree_batch, read_parent_arrays,
                                    read_twitter15, read_weibo, tree_from_edges, tree_from_parents)
from popdiff_jax.data.user_features import kmeans, nearest_centroid
from popdiff_jax.data.instagram import (LoaderReport, PostTable, Split, load_instagram, make_split,
                                        quartile_labels)
from popdiff_jax.experiments.diffusion_lstm import DiffusionLSTMConfig
from popdiff_jax.experiments.diffusion_lstm import prepare as prepare_trees
from popdiff_jax.experiments.diffusion_lstm import run as run_diffusion_lstm
from popdiff_jax.experiments.ndm_protocol import evaluate_protocol
from popdiff_jax.experiments.popularity import (DualAttentionConfig, FusionConfig, SMPConfig,
                                                run_dual_attention, run_fusion_dnn,
                                                run_smp_conv1d, run_smp_trees)
from popdiff_jax.features import FeatureSet, build_features
from popdiff_jax.metrics.infection import InfectionF1, infection_f1, msle, truth_masks
from popdiff_jax.metrics.popularity import classification_metrics, regression_metrics, spearman
from popdiff_jax.metrics.ranking import ranking_sums
from popdiff_jax.metrics.trees import (ap_summary, depth_mae_per_depth, mean_histogram_intersection,
                                       per_class_ap)
from popdiff_jax.models.diffusion_lstm import (LEVELWISE_IMPLS, DiffusionLSTM, chunk_runs,
                                               class_weights, generate_trees, levelwise_tree_lstm,
                                               levelwise_tree_lstm_by_level,
                                               levelwise_tree_lstm_inputs,
                                               levelwise_tree_lstm_inputs_by_level, weighted_bce)
from popdiff_jax.models.dual_attention import DualAttention
from popdiff_jax.models.fusion_dnn import FusionDNN
from popdiff_jax.models.ic_baselines import (FittedIC, candidate_edges, evaluate_ic_baseline,
                                             fit_embedded_ic, fit_netrate, ic_size_msle)
from popdiff_jax.models.lstm import LSTMNextUser
from popdiff_jax.models.ndm import NDM
from popdiff_jax.models.next_user import mask_infected, next_user_nll
from popdiff_jax.models.popularity_baseline import popularity_scores
from popdiff_jax.models.smp import SMPConv1d
from popdiff_jax.simulate.graph import GraphReport, ICGraph, build_graph, random_graph
from popdiff_jax.simulate.ic import ICResult, exact_ic, simulate_ic
from popdiff_jax.simulate.sampler import Simulation, simulate, simulate_dataset
from popdiff_jax.train.checkpoint import Checkpointer, CheckpointError
from popdiff_jax.train.loop import FitResult, fit
from popdiff_jax.train.state import TrainState, apply_gradients, create_train_state
from popdiff_jax.train.parallel import (DataParallel, data_parallel, fit_arguments, group_steps,
                                        init_distributed, make_mesh, multi_step, pad_rows,
                                        shard_batch, stack_batches, table_sharding)
from popdiff_jax.functional import MODEL_NAMES, Model, cascade_batch, next_user_loss, tree_batch
from popdiff_jax.functional import build as build_model
from popdiff_jax.models.lean_softmax import (auto_chunk, lean_eval_sums, lean_loss_fn,
                                             lean_next_user_nll, lean_ranking_sums,
                                             masked_logsumexp)
from popdiff_jax.models.deepwalk import (CSRGraph, DeepWalkConfig, csr_from_edges, deepwalk,
                                         random_walks, skipgram_loss)
from popdiff_jax.models.ndm import FrozenEmbedding
from popdiff_jax.experiments.ndm_extras import (evaluate_f1, freeze_non_params, initial_wc_norms,
                                                social_embedding, wc_norms)
from popdiff_jax.experiments.popularity_reproduce import reproduce_popularity

__all__ = [
    "DataError", "CascadeBatch", "bucket_lengths", "make_batches", "DATASETS", "PAD", "TERMINATE",
    "Cascade", "CascadeDataset", "UserVocab", "load_dataset", "split_cascades", "NextUserConfig",
    "Trained", "load_trained", "run_next_user", "train_next_user", "evaluate_protocol",
    "infection_f1", "msle", "truth_masks", "ranking_sums", "LSTMNextUser", "NDM", "mask_infected",
    "next_user_nll", "popularity_scores", "Simulation", "simulate", "simulate_dataset",
    "Checkpointer", "CheckpointError", "FitResult", "fit", "TrainState", "apply_gradients",
    "create_train_state", "LoaderReport", "PostTable", "Split", "load_instagram", "make_split",
    "quartile_labels", "DualAttentionConfig", "FusionConfig", "SMPConfig", "run_dual_attention",
    "run_fusion_dnn", "run_smp_conv1d", "run_smp_trees", "FeatureSet", "build_features",
    "InfectionF1", "classification_metrics", "regression_metrics", "spearman", "DualAttention",
    "FusionDNN", "FittedIC", "candidate_edges", "evaluate_ic_baseline", "fit_embedded_ic",
    "fit_netrate", "ic_size_msle", "SMPConv1d", "GraphReport", "ICGraph", "build_graph",
    "random_graph", "ICResult", "exact_ic", "simulate_ic", "SyntheticTreesConfig",
    "make_synthetic_trees", "CleaningReport", "Tree", "TreeBatch", "TreeExample",
    "bucket_tree_batches", "make_tree_batch", "read_parent_arrays", "read_twitter15", "read_weibo",
    "tree_from_edges", "tree_from_parents", "kmeans", "nearest_centroid", "DiffusionLSTMConfig",
    "prepare_trees", "run_diffusion_lstm", "ap_summary", "depth_mae_per_depth",
    "mean_histogram_intersection", "per_class_ap", "DiffusionLSTM", "class_weights",
    "generate_trees", "levelwise_tree_lstm", "weighted_bce", "DataParallel", "data_parallel",
    "fit_arguments", "pad_rows", "group_steps", "init_distributed", "make_mesh", "multi_step", "shard_batch", "stack_batches",
    "table_sharding", "MODEL_NAMES", "Model", "build_model", "cascade_batch", "next_user_loss",
    "tree_batch", "auto_chunk", "lean_eval_sums", "lean_loss_fn", "lean_next_user_nll",
    "lean_ranking_sums", "masked_logsumexp", "CSRGraph", "DeepWalkConfig", "csr_from_edges",
    "deepwalk", "random_walks", "skipgram_loss", "FrozenEmbedding", "evaluate_f1",
    "freeze_non_params", "initial_wc_norms", "social_embedding", "wc_norms",
    "reproduce_popularity", "LEVELWISE_IMPLS", "chunk_runs", "levelwise_tree_lstm_by_level",
    "levelwise_tree_lstm_inputs", "levelwise_tree_lstm_inputs_by_level",
]
__version__ = "0.1.0"
