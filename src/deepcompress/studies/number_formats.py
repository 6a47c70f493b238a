"""number-formats: the talk's "Number Representation" table computed from each format, and the LeNets' test
error with weights and activations cast to fp32, fp16, bf16, int16, int8 and binary."""

from __future__ import annotations

import math

from ..numerics import representation_table
from .casting import activation_caster, cast_activations, cast_weights, input_stats, layers
from .common import pct, pyplot

TITLE = "Number representation: range, accuracy, and the LeNets' error in each format"
CAST_FORMATS = ("fp32", "fp16", "bf16", "int16", "int8", "binary")
MODELS = ("lenet-300-100", "lenet-5")
CALIBRATION_IMAGES = 1000
# The slide's rows: (range low, range high, accuracy) as printed; floats' accuracy is relative, the
# integers' absolute (half a unit). The slide has no bf16 row.
TALK = {
    "fp32": ("10^-38 - 10^38", 1e-38, 1e38, ".000006%", 6e-8),
    "fp16": ("6x10^-8 - 6x10^4", 6e-8, 6e4, ".05%", 5e-4),
    "int32": ("0 - 2x10^9", 0, 2e9, "1/2", 0.5),
    "int16": ("0 - 6x10^4", 0, 6e4, "1/2", 0.5),
    "int8": ("0 - 127", 0, 127, "1/2", 0.5),
    "binary": ("0 - 1", 0, 1, "1/2", 0.5),
}
# Within this many points of the fp32 error, a format "does not sacrifice accuracy".
NO_LOSS_POINTS = 0.2


def close(measured: float, talk: float) -> bool:
    """Whether `measured` is what the slide prints: the same decade for a bare power of ten, else within 10%."""
    if talk == 0:
        return measured == 0
    mantissa = talk / 10 ** math.floor(math.log10(talk))
    if abs(mantissa - 1) < 1e-9:
        return math.floor(math.log10(measured)) == math.floor(math.log10(talk))
    return abs(measured / talk - 1) <= 0.1


def _low(row: dict, talk_low: float) -> float:
    """The measured lower end the slide means: fixed point lists magnitudes from 0; floats the smallest
    normal or subnormal value, whichever the slide's figure is nearer to."""
    if row["exponent_bits"] == 0:
        return 0.0
    return min((row["range_low"], row["min_subnormal"]), key=lambda v: abs(math.log10(v / talk_low)))


def representation(study) -> None:
    """The slide's table beside the computed one, one claim per row."""
    rows = []
    for r in representation_table():
        name = r["name"]
        acc = f"{100 * r['accuracy']:.2g}% relative" if r["accuracy_kind"] == "relative" else f"{r['accuracy']:g} absolute"
        computed_range = f"{r['range_low']:.3g} ({r['min_subnormal']:.3g} subnormal) - {r['max']:.5g}" \
            if r["exponent_bits"] else f"{r['range_low']:.0f} - {r['max']:.0f}"
        talk = TALK.get(name)
        rows.append([name, r["sign_bits"], r["exponent_bits"], r["mantissa_bits"], computed_range, acc,
                     talk[0] if talk else "-", talk[3] if talk else "-"])
        if talk:
            _row_claim(study, r, talk)
    study.table("Number representation: computed (numerics.py) against the slide",
                ["format", "S", "E", "M", "range (computed)", "accuracy (computed)", "range (talk)", "accuracy (talk)"],
                rows)


def _row_claim(study, r: dict, talk: tuple) -> None:
    text, lo, hi, acc_text, acc = talk
    low = _low(r, lo)
    ok_low, ok_high, ok_acc = close(low, lo), close(r["max"], hi), close(r["accuracy"], acc)
    measured = f"{low:.3g} - {r['max']:.5g}, accuracy {r['accuracy']:.3g}"
    if ok_low and ok_high and ok_acc:
        why = "computed from the bit fields; the slide's figures are these rounded"
        if r["exponent_bits"] and low == r["min_subnormal"]:
            why += " (its lower end is the smallest subnormal)"
        elif r["exponent_bits"]:
            why += " (its lower end is the smallest normal number)"
    else:
        wrong = [w for w, ok in (("lower end", ok_low), ("upper end", ok_high), ("accuracy", ok_acc)) if not ok]
        why = f"{', '.join(wrong)} differ: {r['name']} is two's complement, so its largest value is " \
              f"2^{r['mantissa_bits']} - 1 = {r['max']:.0f}; the slide's {hi:g} is 2^{r['mantissa_bits'] + 1}, " \
              f"the unsigned range of the same bits" if r["exponent_bits"] == 0 else f"{', '.join(wrong)} differ"
    study.claim(f"{r['name']}: range and accuracy", f"{text}, accuracy {acc_text}", measured,
                ok_low and ok_high and ok_acc, why)


def format_errors(bench, model_name: str) -> dict[str, float]:
    """Test error of the trained `model_name` with weights and layer inputs cast to each CAST_FORMATS format."""
    base = bench.baseline(model_name)
    calib = bench.data().train_x[:CALIBRATION_IMAGES]
    stats = input_stats(base, calib)
    errors = {}
    for fmt in CAST_FORMATS:
        model = bench.baseline(model_name)
        cast_weights(model, fmt)
        casters = {n: activation_caster(fmt, stats[n]) for n in layers(model)}
        with cast_activations(model, casters):
            errors[fmt] = bench.error(model)
    return errors


def run(bench, study) -> None:
    """The representation table, then each LeNet's error per format, a bar chart and the claims."""
    representation(study)
    results = {m: format_errors(bench, m) for m in MODELS}
    study.data["errors"] = results
    study.table("Test error (MNIST) with weights and activations in each format",
                ["model", *CAST_FORMATS], [[m, *(pct(e[f]) for f in CAST_FORMATS)] for m, e in results.items()])
    _plot(study, results)
    _accuracy_claims(study, results)


def _plot(study, results: dict) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.8))
    width = 0.8 / len(results)
    for i, (model, errs) in enumerate(results.items()):
        xs = [j + i * width for j in range(len(CAST_FORMATS))]
        ax.bar(xs, [100 * errs[f] for f in CAST_FORMATS], width, label=model)
    ax.set_xticks([j + width * (len(results) - 1) / 2 for j in range(len(CAST_FORMATS))], CAST_FORMATS)
    ax.set_yscale("log")
    ax.set_ylabel("test error (%), log scale")
    ax.set_title("weights and activations cast to each format (no retraining)")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    study.figure(fig, "format_errors.png", "MNIST test error of each LeNet with every weight and every layer "
                 "input rounded to the format (fixed point: one scale per tensor; binary: sign x mean|w| weights).")


def _accuracy_claims(study, results: dict) -> None:
    for model, errs in results.items():
        lossless = [f for f in CAST_FORMATS if errs[f] - errs["fp32"] <= NO_LOSS_POINTS / 100]
        smallest = min(lossless, key=lambda f: (16 if f == "bf16" else _bits(f)))
        study.claim(f"{model}: the smallest format that does not sacrifice accuracy",
                    "32-bit float is not needed for inference; 8-bit integers suffice (\"8b Int\" inference, "
                    "\"use the smallest representation that doesn't sacrifice accuracy\")",
                    f"{smallest} ({_bits(smallest)} bits): {pct(errs[smallest])} against {pct(errs['fp32'])} in fp32; "
                    f"binary {pct(errs['binary'])}",
                    _bits(smallest) <= 8,
                    f"formats within {NO_LOSS_POINTS} points of fp32: {', '.join(lossless)}; binary without retraining "
                    f"loses accuracy, as expected (binary networks are trained for it)")


def _bits(fmt: str) -> int:
    from ..numerics import get_format

    return get_format(fmt).bits
