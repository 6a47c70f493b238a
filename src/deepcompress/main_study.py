"""The main job's measurements as a study (RESULTS/main/study.json, the schema of docs/REPORT.md): the talk's
claims beside our values, the tables and the figures. Reads only plain data; no torch."""

from __future__ import annotations

from pathlib import Path

from . import atomic
from .hardware.eie_tables import BENCHMARKS
from .report.figures import new_figure, save_png
from .report.schema import validate_study

# Deep Compression (Han, Mao, Dally, ICLR 2016), Table 1, as the talk shows it: ratio, error before -> after.
PAPER_LENETS = {"lenet-300-100": (40.0, 1.64, 1.58), "lenet-5": (39.0, 0.80, 0.74)}
# Deep Compression, section 6 / Fig. 9: pruned FC layers at batch 1 against dense, on CPU, GPU and mobile GPU.
PAPER_SPEEDUP = 3.0
# EIE (Han et al., ISCA 2016), abstract and the talk: energy efficiency against the uncompressed network
# running on a Core i7-5930K and a Titan X, batch 1 (geometric mean over nine FC layers).
EIE_ENERGY = {"cpu": 24000.0, "gpu": 3400.0}
# Errors may rise this much (percentage points) and still count as "without loss of accuracy": 10 of the
# 10,000 MNIST test images.
ERROR_SLACK_POINTS = 0.1
# A ratio of energies agrees with the paper's when within this factor (its own layers spread widely).
ENERGY_FACTOR = 2.0
PLATFORM_LABELS = {"eie": "EIE (64 PEs)", "diannao": "DianNao", "cpu": "i7-5930K model", "gpu": "Titan X model"}


def _pct(err: float) -> float:
    return round(100 * err, 2)


def _size_claims(found: dict) -> list[dict]:
    rec = found["compression"]
    paper = PAPER_LENETS.get(found["model"])
    if paper is None:
        return []
    ratio, before, after = paper
    base, file_err = _pct(rec["baseline_error"]), _pct(found["runtime"]["error"])
    kept = sum(r["nonzeros"] for r in rec["layers"]) / sum(r["weights"] for r in rec["layers"])
    bits = sorted({r["index_bits"] for r in rec["layers"]})
    how = (f"{rec['file_bytes']:,} bytes against {rec['dense_bytes']:,} for the dense fp32 weights and biases; "
           f"{100 * kept:.1f}% of the weights kept, {'/'.join(map(str, bits))}-bit codebook indices, "
           f"relative indices, Huffman where it helps ({found['recipe']} recipe)")
    rise = file_err - base
    return [
        {"claim": f"Deep Compression makes {found['model']} {ratio:g}x smaller", "talk": f"{ratio:g}x",
         "measured": f"{rec['ratio']:.1f}x", "agrees": rec["ratio"] >= ratio,
         "why": how if rec["ratio"] >= ratio else f"below the paper's ratio: {how}"},
        {"claim": f"Deep Compression keeps {found['model']}'s accuracy (test error, dense -> compressed)",
         "talk": f"{before:.2f}% -> {after:.2f}%", "measured": f"{base:.2f}% -> {file_err:.2f}%",
         "agrees": rise <= ERROR_SLACK_POINTS,
         "why": (f"the error measured from the file with the CPU runtime moved {rise:+.2f} points "
                 f"({found['recipe']} recipe); within {ERROR_SLACK_POINTS} points counts as no loss")},
    ]


def _speed_claim(found: dict) -> dict:
    lat, rec = found["latency"], found["compression"]
    speedup = lat["speedup"]
    why = (f"{lat['runtime']['median_us']:.1f} us per image for the file, {lat['torch']['median_us']:.1f} us for "
           f"dense PyTorch (1 thread each, median of {lat['runtime']['images']} images in {lat['rounds']} "
           f"interleaved rounds on this machine, load average {lat['load_average']:.1f})")
    if speedup < PAPER_SPEEDUP:
        lo, hi = _paper_mb([b for b in BENCHMARKS if b.name.startswith(("Alex", "VGG"))])
        why += (f"; the paper's layers (AlexNet's and VGG-16's FC layers) hold {lo:.0f}-{hi:.0f} MB of dense "
                f"weights, which dense kernels stream from DRAM, while {found['model']}'s "
                f"{rec['dense_bytes'] / 1e6:.1f} MB are small enough to stay in the CPU's last-level cache "
                f"between images")
    return {"claim": "Pruned FC layers run 3x to 4x faster than dense at batch 1 on a CPU",
            "talk": "3x to 4x", "measured": f"{speedup:.2f}x", "agrees": speedup >= PAPER_SPEEDUP, "why": why}


def _eie_facts(found: dict) -> str:
    """What the EIE model spent its energy on for this file (the facts behind a ratio unlike the paper's)."""
    layers = [r for r in found["hardware"]["arches"]["eie"][:-1] if r.get("arch") == "eie"]
    total = sum(sum(r["energy_pj"].values()) for r in layers)
    pointers = sum(r["energy_pj"].get("PtrRead", 0.0) for r in layers) / total if total else 0.0
    rows = "/".join(str(r["outputs"]) for r in layers)
    return (f"{100 * pointers:.0f}% of EIE's energy here goes to column-pointer reads, which every PE makes for "
            f"each nonzero input however few of a layer's rows ({rows} here) it holds")


def _energy_claims(found: dict) -> list[dict]:
    hw = found["hardware"]
    eie = hw["arches"]["eie"][-1]
    dense_mb = found["compression"]["dense_bytes"] / 1e6
    claims = []
    for arch, paper in EIE_ENERGY.items():
        dense = hw[f"{arch}_dense"]
        ratio = eie["frames_per_j"] / dense["frames_per_j"]
        agrees = paper / ENERGY_FACTOR <= ratio <= paper * ENERGY_FACTOR
        why = (f"models: EIE {eie['energy_j'] * 1e6:.2f} uJ per frame; the dense network on the {dense['platform']} "
               f"{dense['time_us']:.1f} us at {dense['power_w']:g} W = {dense['energy_j'] * 1e6:,.0f} uJ; within "
               f"{ENERGY_FACTOR:g}x counts as agreement")
        if not agrees:
            lo, hi = _paper_mb(BENCHMARKS)
            why += (f". The paper's nine layers hold {lo:.0f}-{hi:.0f} MB of dense weights, {found['model']} "
                    f"{dense_mb:.1f} MB. ")
            if ratio < paper:
                why += _eie_facts(found)
            else:
                overhead = dense["per_call_overhead_us"] * dense["layers"] / dense["time_us"]
                why += (f"The {arch.upper()} model's fixed cost per layer call ({dense['per_call_overhead_us']:.1f} "
                        f"us) is {100 * overhead:.0f}% of its time on these small layers")
        claims.append({"claim": f"EIE is {paper:,.0f}x more energy efficient than a {arch.upper()} running the "
                                f"uncompressed network (batch 1)",
                       "talk": f"{paper:,.0f}x", "measured": f"{ratio:,.0f}x", "agrees": agrees, "why": why})
    return claims


def _paper_mb(layers) -> tuple[float, float]:
    """Smallest and largest dense fp32 weight size (MB) among the paper's benchmark `layers`."""
    sizes = [4 * b.inputs * b.outputs / 1e6 for b in layers]
    return min(sizes), max(sizes)


def claims(found: dict) -> list[dict]:
    """The talk's claims this run can check, each with our value, agrees/differs and why."""
    return [*_size_claims(found), _speed_claim(found), *_energy_claims(found)]


def _tables(found: dict) -> list[dict]:
    rec, rt, lat, hw = found["compression"], found["runtime"], found["latency"], found["hardware"]
    eie = hw["arches"]["eie"][-1]
    summary = [["model / data set", f"{found['model']} / {found['dataset']}"],
               ["recipe", found["recipe"]], ["baseline", found["baseline"]],
               ["file bytes", rec["file_bytes"]], ["dense fp32 bytes", rec["dense_bytes"]],
               ["compression ratio", round(rec["ratio"], 1)],
               ["test error, dense baseline (%)", _pct(rec["baseline_error"])],
               ["test error, the file in PyTorch (%)", _pct(rec["test_error"])],
               ["test error, the file with the CPU runtime (%)", _pct(rt["error"])],
               ["batch-1 latency, CPU runtime (us)", round(lat["runtime"]["median_us"], 1)],
               ["batch-1 latency, dense PyTorch (us)", round(lat["torch"]["median_us"], 1)],
               ["CPU speed-up at batch 1", round(lat["speedup"], 2)],
               ["EIE frames/J (model)", round(eie["frames_per_j"])]]
    layers = [[r["name"], r["kind"], "x".join(map(str, r["shape"])), r["weights"], round(100 * r["kept"], 1),
               r["index_bits"], r["gap_bits"], r["bytes"], r["dense_bytes"], round(r["size_pct"], 2)]
              for r in rec["layers"]]
    stages = [[s["stage"], _pct(s["test_error"]),
               ", ".join(f"{k} {v}" for k, v in s.items() if k not in ("stage", "test_error"))] for s in rec["stages"]]
    runtime = [[name, round(lat[key]["median_us"], 1), round(lat[key]["p10_us"], 1), round(lat[key]["p90_us"], 1),
                lat[key]["images"]] for name, key in (("CPU runtime, from the file", "runtime"),
                                                      ("dense PyTorch, same weights", "torch"))]
    layouts = [[r["name"], r["kind"], r["nonzeros"], round(100 * r["density"], 1), r["layout"], r["why"]]
               for r in rt["layers"]]
    return [
        {"title": "Summary", "columns": ["quantity", "value"], "rows": summary},
        {"title": "The compressed file, per layer (sizes from the file's bytes)",
         "columns": ["layer", "kind", "shape", "weights", "kept (%)", "index bits", "gap bits", "bytes",
                     "dense bytes", "size (% of dense)"], "rows": layers},
        {"title": "Test error by stage (PyTorch; the last row is the decoded file)",
         "columns": ["stage", "test error (%)", "detail"], "rows": stages},
        {"title": f"CPU, batch 1, this machine: time per image over {lat['rounds']} interleaved rounds, 1 thread "
                  f"(load average {lat['load_average']:.1f})",
         "columns": ["method", "median (us)", "p10 (us)", "p90 (us)", "images"], "rows": runtime},
        {"title": f"CPU runtime: layers and layouts (batch {rt['batch']}: {rt['images_per_s']:,.0f} images/s)",
         "columns": ["layer", "kind", "nonzeros", "density (%)", "layout (batch 1)", "why"], "rows": layouts},
        {"title": f"Hardware models, batch 1 (EIE input activations {100 * hw['act_density']:.0f}% nonzero)",
         "columns": ["platform", "runs", "us / frame", "frames/s", "frames/J", "frames/s/mm^2", "note"],
         "rows": _hardware_rows(hw)},
        {"title": "Steps of this run", "columns": ["step", "wall time (s)"],
         "rows": [[k, round(v, 1)] for k, v in found["step_s"].items()]},
    ]


def _hardware_rows(hw: dict) -> list[list]:
    rows = []
    for arch, records in hw["arches"].items():
        t = records[-1]
        note = ("partial: no forward pass in the file" if t.get("no_forward_pass") else
                "partial: " + ", ".join(t["skipped_layers"]) + " not costed" if t["partial"] else "")
        rows.append([PLATFORM_LABELS[arch], "the file" + (f" ({t['arch']})" if t["arch"] != arch else ""),
                     round(t["time_us"], 2), round(t["frames_per_s"]), round(t["frames_per_j"]),
                     round(t.get("frames_per_s_mm2") or 0) or None, note])
    for arch in ("cpu", "gpu"):
        d = hw[f"{arch}_dense"]
        rows.append([PLATFORM_LABELS[arch], "dense, uncompressed", round(d["time_us"], 2),
                     round(1e6 / d["time_us"]), round(d["frames_per_j"]), None, "what the EIE paper compares with"])
    return rows


def _figures(found: dict, folder: Path) -> list[dict]:
    rec, lat, hw = found["compression"], found["latency"], found["hardware"]
    fig, ax = new_figure()
    names = [s["stage"] for s in rec["stages"]]
    ax.barh(range(len(names)), [100 * s["test_error"] for s in rec["stages"]], color="#4c78a8")
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("test error (%)")
    save_png(fig, folder / "stages.png")

    fig, ax = new_figure()
    layer_names = [r["name"] for r in rec["layers"]]
    pos = range(len(layer_names))
    ax.bar([p - 0.2 for p in pos], [r["dense_bytes"] for r in rec["layers"]], 0.4, label="dense fp32")
    ax.bar([p + 0.2 for p in pos], [r["bytes"] for r in rec["layers"]], 0.4, label="in the file")
    ax.set_xticks(list(pos), layer_names)
    ax.set_yscale("log")
    ax.set_ylabel("bytes")
    ax.legend()
    save_png(fig, folder / "sizes.png")

    fig, ax = new_figure()
    ax.boxplot([lat["samples_us"]["runtime"], lat["samples_us"]["torch"]], orientation="horizontal", showfliers=False)
    ax.set_yticks([1, 2], ["CPU runtime\n(the file)", "dense\nPyTorch"])
    ax.set_xlabel("batch-1 time per image (us), 1 thread")
    save_png(fig, folder / "latency.png")

    fig, ax = new_figure()
    rows = _hardware_rows(hw)
    labels = [f"{r[0]}\n{'dense' if r[1].startswith('dense') else 'file'}" for r in rows]
    ax.bar(range(len(rows)), [r[4] for r in rows], color=["#4c78a8"] * (len(rows) - 2) + ["#bab0ac"] * 2)
    ax.set_xticks(range(len(rows)), labels, fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("frames / J (models)")
    save_png(fig, folder / "hardware.png")
    return [
        {"file": "stages.png", "caption": "Test error after each stage of Deep Compression (the last: decoded file)."},
        {"file": "sizes.png", "caption": "Bytes per layer: dense fp32 against the compressed file (log scale)."},
        {"file": "latency.png", "caption": "Batch-1 time per image on this machine's CPU (boxes: p25-p75, "
                                           "whiskers: 1.5 IQR)."},
        {"file": "hardware.png", "caption": "Frames per joule of the compressed file on each hardware model, "
                                            "and of the dense network on the CPU and GPU models (log scale)."},
    ]


def build_study(found: dict, folder: Path) -> dict:
    """The main job's study (figures written into `folder`)."""
    rec = found["compression"]
    return {
        "name": "main", "title": f"The main job: {found['model']} compressed, run and costed",
        "command": found["command"],
        "summary": (f"{found['model']} on {found['dataset']}: baseline {found['baseline']}; Deep Compression "
                    f"({found['recipe']} recipe) to {rec['file_bytes']:,} bytes ({rec['ratio']:.1f}x); the file "
                    f"run with the CPU runtime and costed on the EIE, DianNao, CPU and GPU models. The "
                    f"compression run's own report: {Path(found['file']).parent / 'report.md'}."),
        "wall_s": round(found["wall_s"], 1),
        "claims": claims(found), "tables": _tables(found), "figures": _figures(found, folder),
    }


def write_study(folder: Path, found: dict) -> dict:
    """Write FOLDER/study.json and its figures; checked against the schema before it is written."""
    folder.mkdir(parents=True, exist_ok=True)
    study = build_study(found, folder)
    validate_study(folder / "study.json", study)
    atomic.write_json(folder / "study.json", study)
    return study

