"""Sample-quality metrics for FashionMNIST generators.

FID, KID, improved precision/recall and density/coverage on the features of a small FashionMNIST
classifier of the project's own (Inception weights cannot be downloaded here; standard Inception
FID runs through clean-fid when its weights file is present), each reported with its sample
count, the extractor's name and checksum, and the real-data floor at the same sample count.
Plus a sampling-speed harness.
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
from .speed import measure_speed

__all__ = [
    "CHECKPOINT_SHA256",
    "EXTRACTOR_NAME",
    "FEATURE_DIM",
    "CheckpointError",
    "FashionCNN",
    "check_images",
    "cli_eval",
    "cli_train_classifier",
    "compute_prdc",
    "evaluate_samples",
    "extract_features",
    "feature_statistics",
    "fid_floor",
    "fid_from_features",
    "format_report",
    "frechet_distance",
    "get_feature_extractor",
    "inception_fid",
    "kid",
    "load_feature_extractor",
    "load_manifest",
    "load_samples",
    "measure_speed",
    "reference_stats",
    "train_classifier",
]
