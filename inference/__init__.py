"""Everything that runs a model/guide pair: checking, data, training, checkpoints, scores."""

from inference.check import DataError, PairError, check_pair, check_support
from inference.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from inference.data import LoaderData, TensorData, as_data
from inference.datasets import DATASETS, load_dataset, load_splits, resolve_data_dir
from inference.diagnostics import khat_summary, psis_khat
from inference.evaluate import elbo_terms, evaluate_elbo
from inference.generate import reconstruct, sample
from inference.marginal import ImportanceSummary, importance_sample, iw_log_likelihood
from inference.pair import Pair, as_pair
from inference.programs import Sites, program
from inference.run_folder import load_run, save_run
from inference.scores import score
from inference.train import History, TrainingDiverged, fit, resolve_device

__all__ = [
    "CheckpointError", "DATASETS", "DataError", "History", "ImportanceSummary", "LoaderData",
    "Pair", "PairError", "Sites", "TensorData", "TrainingDiverged", "as_data", "as_pair",
    "check_pair", "check_support", "elbo_terms", "evaluate_elbo", "fit", "importance_sample",
    "iw_log_likelihood", "khat_summary", "load_checkpoint", "load_dataset", "load_run",
    "load_splits", "program", "psis_khat", "reconstruct", "resolve_data_dir", "resolve_device",
    "sample", "save_checkpoint", "save_run", "score",
]
