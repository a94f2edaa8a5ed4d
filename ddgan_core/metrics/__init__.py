"""Sample-quality metrics for FashionMNIST generators.

FID, KID, improved precision/recall and density/coverage on the features of a small FashionMNIST
classifier of the project's own (Inception weights cannot be downloaded here; standard Inception
FID runs through clean-fid when its weights file is present), each reported with its sample
count, the extractor's name and checksum, and the real-data floor at the same sample count;
optionally with bootstrap uncertainty over the generated samples (:mod:`.uncertainty`) and on a
second, independent extractor ``fmnist-cnn-b`` (:mod:`.second`). Plus a sampling-speed harness.
"""

from .evaluate import cli_eval, evaluate_samples, format_report, load_samples
from .features import (
    CHECKPOINT_SHA256,
    EXTRACTOR_NAME,
    FEATURE_DIM,
    CheckpointError,
    FashionCNN,
    check_images,
    cli_train_classifier,
    extract_features,
    get_feature_extractor,
    load_feature_extractor,
    load_manifest,
    train_classifier,
)
from .fid import (
    feature_statistics,
    fid_floor,
    fid_from_features,
    frechet_distance,
    inception_fid,
    kid,
    reference_stats,
)
from .prdc import compute_prdc
from .second import (
    SECOND_NAME,
    SECOND_SHA256,
    FashionCNNB,
    extract_second_features,
    get_second_extractor,
    load_second_extractor,
    train_second_extractor,
)
from .speed import measure_speed
from .uncertainty import bootstrap_metrics

__all__ = [
    "CHECKPOINT_SHA256",
    "EXTRACTOR_NAME",
    "FEATURE_DIM",
    "SECOND_NAME",
    "SECOND_SHA256",
    "CheckpointError",
    "FashionCNN",
    "FashionCNNB",
    "bootstrap_metrics",
    "check_images",
    "cli_eval",
    "cli_train_classifier",
    "compute_prdc",
    "evaluate_samples",
    "extract_features",
    "extract_second_features",
    "feature_statistics",
    "fid_floor",
    "fid_from_features",
    "format_report",
    "frechet_distance",
    "get_feature_extractor",
    "get_second_extractor",
    "inception_fid",
    "kid",
    "load_feature_extractor",
    "load_manifest",
    "load_second_extractor",
    "load_samples",
    "measure_speed",
    "reference_stats",
    "train_classifier",
    "train_second_extractor",
]
