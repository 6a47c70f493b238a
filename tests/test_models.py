"""LeNet-300-100 and LeNet-5 (Caffe variant): shapes and the parameter counts of Deep Compression's table."""

import pytest
import torch

from deepcompress.errors import UserError
from deepcompress.models import build_model, count_parameters


@pytest.mark.parametrize("name,params", [("lenet-300-100", 266_610), ("lenet-5", 431_080)])
def test_parameter_counts(name, params):
    assert count_parameters(build_model(name)) == params


def test_lenet5_caffe_layer_shapes():
    shapes = {k: tuple(v.shape) for k, v in build_model("lenet-5").state_dict().items() if k.endswith("weight")}
    assert shapes == {"conv1.weight": (20, 1, 5, 5), "conv2.weight": (50, 20, 5, 5),
                      "ip1.weight": (500, 800), "ip2.weight": (10, 500)}


def test_lenet300_layer_shapes():
    shapes = {k: tuple(v.shape) for k, v in build_model("lenet-300-100").state_dict().items() if k.endswith("weight")}
    assert shapes == {"ip1.weight": (300, 784), "ip2.weight": (100, 300), "ip3.weight": (10, 100)}


@pytest.mark.parametrize("name", ["lenet-300-100", "lenet-5"])
def test_forward_shape(name):
    assert build_model(name)(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


def test_unknown_model():
    with pytest.raises(UserError, match="unknown model"):
        build_model("resnet")
