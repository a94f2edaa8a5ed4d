"""Which FashionMNIST classes a generator draws: the data set's analogue of a mode count.

StackedMNIST's mode count (how many of the 1,000 digit triples a GAN produces) is the usual test
of mode collapse; FashionMNIST has ten classes in equal shares, so the pinned classifier's
predicted labels of the samples give the same kind of number: how many classes are covered and
how far the histogram is from uniform (a KL divergence in nats, 0 for equal shares). The
classifier is 92-93% accurate, so real test images do not score a perfect 0 either:
:func:`class_histogram` of test images is the floor of the statistic.
"""

from __future__ import annotations

import math

import torch

from .features import check_images, get_feature_extractor

NUM_CLASSES = 10
#: A class counts as covered when it holds at least this share of its uniform share (1/10), i.e.
#: 2.5% of the samples: a class present only through a few misclassified images is not covered.
COVERED_SHARE = 0.25


@torch.no_grad()
def predicted_labels(images: torch.Tensor, device: str | torch.device | None = None,
                     batch_size: int = 1000) -> torch.Tensor:
    """The pinned classifier's label (0..9) of each float image in [-1, 1], int64 on the CPU."""
    check_images(images)
    model = get_feature_extractor(device)
    where = next(model.parameters()).device
    was_training = model.training
    model.eval()
    labels = []
    try:
        for start in range(0, images.shape[0], batch_size):
            batch = images[start: start + batch_size].to(where, torch.float32)
            if where.type == "cpu":
                batch = batch.contiguous(memory_format=torch.channels_last)
            labels.append(model(batch).argmax(dim=1).cpu())
    finally:
        model.train(was_training)
    return torch.cat(labels) if labels else torch.zeros(0, dtype=torch.long)


def histogram_statistics(labels: torch.Tensor) -> dict[str, object]:
    """Counts, shares, classes covered (share >= :data:`COVERED_SHARE` / 10) and the KL
    divergence KL(p || uniform) = sum_c p_c ln(10 p_c) of integer labels in 0..9."""
    labels = torch.as_tensor(labels, dtype=torch.long).flatten()
    if labels.numel() == 0:
        raise ValueError("class histogram of no samples: pass at least one label")
    if int(labels.min()) < 0 or int(labels.max()) >= NUM_CLASSES:
        raise ValueError(f"labels must lie in 0..{NUM_CLASSES - 1}")
    counts = torch.bincount(labels, minlength=NUM_CLASSES).tolist()
    n = labels.numel()
    shares = [c / n for c in counts]
    kl = sum(p * math.log(NUM_CLASSES * p) for p in shares if p > 0)
    return {
        "counts": counts,
        "shares": shares,
        "classes_covered": sum(p >= COVERED_SHARE / NUM_CLASSES for p in shares),
        "kl_to_uniform": kl,
        "max_share": max(shares),
        "min_share": min(shares),
        "n": n,
    }


def class_histogram(images: torch.Tensor, device: str | torch.device | None = None,
                    batch_size: int = 1000) -> dict[str, object]:
    """:func:`histogram_statistics` of the pinned classifier's labels of ``images``."""
    return histogram_statistics(predicted_labels(images, device, batch_size))
