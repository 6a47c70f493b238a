"""Layer shapes of AlexNet and VGG-16, the talk's 4 sub-problems, and the training cost closed forms."""

import pytest

from deepcompress.hardware.netspecs import ALEXNET, VGG16, benchmark_fc, fc, network
from deepcompress.hardware.roofline import TITAN_X, roofline_time, Traffic
from deepcompress.hardware.training import classify, network_table, step_traffic, training_cost


def test_network_shapes():
    # Caffe AlexNet 61M parameters, VGG-16 138M: with their 10,568 and 13,416 biases, 60,965,224 and 138,357,544
    assert sum(layer.weights for layer in ALEXNET) == 60_965_224 - 10_568
    assert sum(layer.weights for layer in VGG16) == 138_357_544 - 13_416
    names = {layer.name: layer for layer in ALEXNET}
    assert names["conv1"].out_hw == (55, 55) and names["conv2"].out_hw == (27, 27)
    assert names["conv5"].out_hw == (13, 13) and names["fc6"].in_channels == 256 * 6 * 6
    assert VGG16[-3].in_channels == 512 * 7 * 7 and VGG16[0].out_hw == (224, 224)
    assert network("VGG-16") is VGG16


def test_fc_layers_are_eie_table3():
    """The networks' FC layers are EIE's benchmark layers: the same shapes and weight densities."""
    for net, prefix in ((ALEXNET, "Alex"), (VGG16, "VGG")):
        for layer in net[-3:]:
            table = benchmark_fc(f"{prefix}-{layer.name[2:]}")
            assert (layer.kind, layer.in_channels, layer.out_channels, layer.weight_density) == \
                   (table.kind, table.in_channels, table.out_channels, table.weight_density)


def test_the_talks_table_holds_for_training():
    """Conv: B x S weight reuse, activation-dominated; FC: B weight reuse, weight-dominated (fp32, B = 128)."""
    for layer in ALEXNET + VGG16:
        c = classify(layer, "train", 128)
        if layer.kind == "conv":
            assert c["subproblem"] == "Train Conv" and c["weight_reuse"] == 128 * layer.positions
            assert c["dominated_by"] == "activations"
        else:
            assert c["subproblem"] == "Train FC" and c["weight_reuse"] == 128
            assert c["dominated_by"] == "weights"


def test_inference_classification():
    fc7, conv1, conv5 = ALEXNET[6], ALEXNET[0], ALEXNET[4]
    c = classify(fc7, "infer")
    assert (c["batch"], c["weight_reuse"], c["dominated_by"], c["bound"]) == (1, 1, "weights", "memory")
    assert c["weight_bytes"] == fc7.weights  # 8-bit weights
    assert classify(conv1, "infer")["dominated_by"] == "activations"
    # at batch 1 and 8 bits, AlexNet's late conv layers (13 x 13 maps) hold more weight than activation bytes:
    # 442,368 weights against 384 x 169 + 256 x 169 activations
    assert classify(conv5, "infer")["dominated_by"] == "weights"
    with pytest.raises(ValueError):
        classify(fc7, "serve")


def test_training_step_closed_form():
    layer, b = fc("l", 1000, 500), 32
    calls = step_traffic(layer, b)
    assert [calls[k].flops for k in ("forward", "backward_data", "backward_weights")] == [2.0 * b * 500_000] * 3
    assert calls["update"].flops == 3 * 500_000 and calls["update"].bytes == 4 * 5 * 500_000
    assert calls["forward"].bytes == 4 * (500_000 + b * 1500)
    cost = training_cost(layer, b)
    assert cost["flops"] == 6 * b * 500_000 + 3 * 500_000
    expected = sum(roofline_time(TITAN_X, t) for t in calls.values()) * 1e6
    assert cost["roofline_total_us"] == pytest.approx(expected)
    assert cost["sustained_total_us"] > cost["roofline_total_us"]
    assert cost["kept_activation_bytes"] == 4 * b * 1000 and cost["state_bytes"] == 12 * 500_000
    assert cost["images_per_j"] == pytest.approx(cost["images_per_s"] / 159)


def test_network_table_has_every_layer():
    rows = network_table(ALEXNET, 64)
    assert [r["layer"] for r in rows] == [layer.name for layer in ALEXNET]
    assert all(r["train"]["batch"] == 64 and r["infer"]["batch"] == 1 for r in rows)
    # a conv training step on the GPU is compute-bound, FC inference memory-bound
    assert rows[2]["train"]["bound"] == "compute" and rows[6]["infer"]["bound"] == "memory"
    assert isinstance(Traffic(1, 1).intensity, float)
