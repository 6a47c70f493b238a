"""Test error and timing of a loaded CompressedModel on arrays of images and labels."""

from __future__ import annotations

import time

import numpy as np

WARMUP_CALLS = 3


def evaluate(model, x: np.ndarray, y: np.ndarray, batch: int) -> dict:
    """Top-1 errors over (x, y) in batches of `batch`, and the time of that pass (after a warm-up batch).

    Returns {images, wrong, error, seconds, images_per_s, predictions}.
    """
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    n = len(y)
    model(x[:batch])  # first call loads the compiled kernels; keep it out of the timing
    predictions = np.empty(n, np.int64)
    start = time.perf_counter()
    for i in range(0, n, batch):
        predictions[i:i + batch] = model.predict(x[i:i + batch])
    seconds = time.perf_counter() - start
    wrong = int((predictions != np.asarray(y)).sum())
    return {"images": n, "wrong": wrong, "error": wrong / max(n, 1), "seconds": seconds,
            "images_per_s": n / seconds if seconds > 0 else float("inf"), "predictions": predictions}


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
    predictions = np.empty(count, np.int64)
    for i in range(count):
        t = time.perf_counter()
        out = model(x[i])
        times[i] = time.perf_counter() - t
        predictions[i] = out.argmax()
    us = times * 1e6
    return {"images": count, "median_us": float(np.median(us)), "p10_us": float(np.percentile(us, 10)),
            "p90_us": float(np.percentile(us, 90)), "predictions": predictions}
