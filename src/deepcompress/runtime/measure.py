"""Test error and timing of a loaded CompressedModel on arrays of inputs and labels: a label per sample
(images), or per position (a language model: then perplexity too)."""

from __future__ import annotations

import math
import time

import numpy as np

WARMUP_CALLS = 3


def evaluate(model, x: np.ndarray, y: np.ndarray, batch: int) -> dict:
    """Top-1 errors over (x, y) in batches of `batch`, and the time of that pass (after a warm-up batch).
    With a label per position (y (N, T), logits (N, T, V)) each position counts, and the mean cross-entropy
    per position and its perplexity are added.

    Returns {images, labels, wrong, error, seconds, images_per_s, predictions[, cross_entropy, perplexity]}.
    """
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    y = np.asarray(y)
    n = len(y)
    model(x[:batch])  # first call loads the compiled kernels; keep it out of the timing
    predictions, nats = np.empty(y.shape, np.int64), 0.0
    start = time.perf_counter()
    for i in range(0, n, batch):
        out = np.asarray(model(x[i:i + batch]))
        predictions[i:i + batch] = out.argmax(axis=-1)
        if y.ndim > 1:
            nats += float(sequence_ce(out, y[i:i + batch]).sum())
    seconds = time.perf_counter() - start
    wrong = int((predictions != y).sum())
    res = {"images": n, "labels": int(y.size), "wrong": wrong, "error": wrong / max(y.size, 1), "seconds": seconds,
           "images_per_s": n / seconds if seconds > 0 else float("inf"), "predictions": predictions}
    if y.ndim > 1:
        res["cross_entropy"] = nats / n
        res["perplexity"] = math.exp(res["cross_entropy"])
    return res


def sequence_ce(logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per sequence, the mean cross-entropy per position of (N, T, V) logits against (N, T) targets (float64)."""
    flat = logits.reshape(-1, logits.shape[-1]).astype(np.float64)
    top = flat.max(1)
    logz = np.log(np.exp(flat - top[:, None]).sum(1)) + top
    return (logz - flat[np.arange(len(flat)), y.reshape(-1)]).reshape(len(logits), -1).mean(1)


def latency(model, x: np.ndarray, images: int) -> dict:
    """Batch-1 time per image over the first `images` images, one call each (after warm-up calls).

    Returns {images, median_us, p10_us, p90_us, predictions}.
    """
    count = min(images, len(x))
    if count < 1:
        raise ValueError("latency needs at least one image")
    for i in range(WARMUP_CALLS):
        model(x[i % count])
    times = np.empty(count)
    predictions = []
    for i in range(count):
        t = time.perf_counter()
        out = model(x[i])
        times[i] = time.perf_counter() - t
        predictions.append(np.asarray(out).argmax(axis=-1))
    us = times * 1e6
    return {"images": count, "median_us": float(np.median(us)), "p10_us": float(np.percentile(us, 10)),
            "p90_us": float(np.percentile(us, 90)), "predictions": np.array(predictions, np.int64)}
