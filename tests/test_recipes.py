"""Typed recipes: every committed recipe parses; a typo, a wrong type or a layer the model lacks is one
clear line naming the file, table and key, raised before any data is read or any training starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from deepcompress.cli import main
from deepcompress.compress import PipelineHooks, Recipe, compress_model, read_recipe
from deepcompress.compress.prune import prunable_layers
from deepcompress.errors import UserError
from deepcompress.models import build_model
from deepcompress.recipes import load_recipe, recipe_path
from deepcompress.train import TrainConfig

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = sorted(p for p in [*(ROOT / "src" / "deepcompress" / "recipes").glob("*.toml"),
                               *(ROOT / "benchmarks" / "recipes").glob("*.toml")]
                   if p.name.startswith("lenet"))  # minilm.toml: tests/test_minilm_recipe.py
BUILT_IN = recipe_path("lenet-300-100").read_text()

# (text in the built-in LeNet-300-100 recipe, what replaces it, the message after "recipe FILE: ")
MISTAKES = {
    "iteratons": ("iterations = 5", "iteratons = 5",
                  "[prune] unknown key 'iteratons' (did you mean 'iterations'?)"),
    "iteration": ("iterations = 5", "iteration = 3",
                  "[prune] unknown key 'iteration' (did you mean 'iterations'?)"),
    "fc_bit": ("fc_bits = 5", "fc_bit = 2", "[quantize] unknown key 'fc_bit' (did you mean 'fc_bits'?)"),
    "fc_gap_bit": ('fc_gap_bits = "auto"', "fc_gap_bit = 3",
                   "[encode] unknown key 'fc_gap_bit' (did you mean 'fc_gap_bits'?)"),
    "value": ('values = "f16"', 'value = "f16"', "[encode] unknown key 'value' (did you mean 'values'?)"),
    "[prun]": ("[prune]\n", "[prun]\n", "unknown table 'prun' (did you mean 'prune'?)"),
    "five": ("fc_bits = 5", 'fc_bits = "five"',
             "[quantize] fc_bits = 'five' (a string): expected an integer in 1..8"),
    "epochs": ("epochs = 6", 'epochs = "30"',
               "[prune.retrain] epochs = '30' (a string): expected an integer"),
    "train epochs": ("epochs = 30", 'epochs = "30"', "[train] epochs = '30' (a string): expected an integer"),
    "sparsity": ("ip1 = 0.92", "ip1 = 92", "[prune] layers.ip1 = 92: expected a fraction removed in [0, 1)"),
    "bits": ("conv_bits = 8", "conv_bits = 9", "[quantize] conv_bits = 9: expected an integer in 1..8"),
    "gap bits": ('conv_gap_bits = "auto"', 'conv_gap_bits = "smallest"',
                 "[encode] conv_gap_bits = 'smallest': expected an integer in 1..8 or 'auto'"),
    "rule": ('rule = "sparsity"', 'rule = "global"',
             "[prune] rule = 'global' needs sparsity (the fraction of all weights removed)"),
    "override": ("[quantize]\n", '[prune.dataset.fashion-mnist]\niteratons = 2\n[quantize]\n',
                 "[prune.dataset.fashion-mnist] unknown key 'iteratons' (did you mean 'iterations'?)"),
    "data set": ("[quantize]\n", '[prune.dataset.fashion_mnist]\niterations = 2\n[quantize]\n',
                 "[prune.dataset] unknown data set 'fashion_mnist' (did you mean 'fashion-mnist'?)"),
}


def _edited(tmp_path: Path, old: str, new: str) -> Path:
    """The built-in LeNet-300-100 recipe with `old` replaced by `new`, as tmp_path/bad.toml."""
    assert BUILT_IN.count(old) >= 1, old
    path = tmp_path / "bad.toml"
    path.write_text(BUILT_IN.replace(old, new, 1))
    return path


class Untouchable:
    """A data set that fails the test when anything but its name is read."""

    name = "mnist"

    def __getattr__(self, key):
        raise AssertionError(f"data.{key} was read before the recipe was checked")


class Calls(PipelineHooks):
    """Records every training run and finished stage of a compression run."""

    def __init__(self):
        self.calls = []

    def training(self, name):
        self.calls.append(("train", name))
        return []

    def after_stage(self, name, model, result):
        self.calls.append(("after", name))


def _refused_before_work(tmp_path: Path, recipe, message: str) -> None:
    """compress_model refuses `recipe` with exactly `message`, before reading data, training or writing."""
    calls = Calls()
    with pytest.raises(UserError) as err:
        compress_model(build_model("lenet-300-100"), Untouchable(), recipe, tmp_path / "out", hooks=calls,
                       progress=False)
    assert str(err.value) == message
    assert calls.calls == [] and not (tmp_path / "out").exists()


@pytest.mark.parametrize("case", list(MISTAKES))
def test_a_mistake_is_one_line_naming_file_table_and_key(tmp_path, case):
    old, new, message = MISTAKES[case]
    path = _edited(tmp_path, old, new)
    with pytest.raises(UserError) as err:
        read_recipe("lenet-300-100", path)
    assert str(err.value) == f"recipe {path}: {message}"
    _refused_before_work(tmp_path, load_recipe("lenet-300-100", path), f"recipe: {message}")


def test_missing_stage_and_unknown_layer_are_refused_before_work(tmp_path):
    tables = load_recipe("lenet-300-100")
    del tables["prune"]
    _refused_before_work(tmp_path, tables, "the recipe has no [prune] table; compressing needs [prune] and "
                                           "[quantize] ([encode] is optional)")
    tables = load_recipe("lenet-300-100")
    tables["quantize"]["layers"] = {"ip11": 3}
    _refused_before_work(tmp_path, tables, "recipe: [quantize.layers] the model has no layer 'ip11' "
                                           "(did you mean 'ip1'?)")
    typed = read_recipe("lenet-5")  # a typed recipe is checked against the model too
    _refused_before_work(tmp_path, typed, "recipe lenet-5.toml: [prune.layers] the model has no layer "
                                          "'conv1' (expected one of: ip1, ip2, ip3)")


def _cli(argv: list[str], capsys) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


@pytest.mark.parametrize("case", ["iteratons", "five", "[prun]"])
def test_compress_command_refuses_a_bad_recipe_in_one_line(tmp_path, capsys, case):
    old, new, message = MISTAKES[case]
    path = _edited(tmp_path, old, new)
    # a data folder that does not exist: had the command loaded data first, it would complain about that
    code, err = _cli(["compress", "--recipe", str(path), "--data-dir", str(tmp_path / "no-data"),
                      "--out", str(tmp_path / "out")], capsys)
    assert code != 0
    assert err == f"deepcompress compress: error: recipe {path}: {message}\n"
    assert not (tmp_path / "out").exists()


def test_compress_command_checks_layers_and_tables_before_loading_data(tmp_path, capsys):
    common = ["--data-dir", str(tmp_path / "no-data"), "--out", str(tmp_path / "out")]
    code, err = _cli(["compress", "--model", "lenet-5", "--recipe", str(recipe_path("lenet-300-100"))] + common,
                     capsys)
    assert code != 0 and err == (f"deepcompress compress: error: recipe {recipe_path('lenet-300-100')}: "
                                 "[prune.layers] lenet-5 has no layer 'ip3' (did you mean 'ip2'?)\n")
    path = tmp_path / "no-train.toml"
    path.write_text(BUILT_IN[BUILT_IN.index("[prune]"):])
    code, err = _cli(["compress", "--recipe", str(path)] + common, capsys)
    assert code != 0 and err == (f"deepcompress compress: error: recipe {path} has no [train] table; compress "
                                 "needs [prune] and [quantize], and [train] unless --checkpoint gives the "
                                 "trained model ([encode] is optional)\n")


def test_train_command_refuses_a_bad_recipe_in_one_line(tmp_path, capsys):
    path = _edited(tmp_path, "epochs = 30", 'epochs = "30"')
    code, err = _cli(["train", "--recipe", str(path), "--data-dir", str(tmp_path / "no-data"),
                      "--out", str(tmp_path / "out")], capsys)
    assert code != 0
    assert err == f"deepcompress train: error: recipe {path}: [train] epochs = '30' (a string): expected an integer\n"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.name)
def test_committed_recipes_parse_with_their_settings(path):
    model = "lenet-5" if path.name.startswith("lenet-5") else "lenet-300-100"
    recipe = read_recipe(model, path)
    recipe.check_layers(prunable_layers(build_model(model)), model)
    tables = load_recipe(model, path)
    assert recipe.train == TrainConfig(**tables["train"])
    assert recipe.prune.layers == tables["prune"]["layers"] and recipe.prune.iterations == tables["prune"]["iterations"]
    assert recipe.quantize.finetune.epochs == tables["quantize"]["finetune"]["epochs"] > 0
    assert recipe.encode.values == "f16" and recipe.datasets == {}


def test_defaults_are_the_pipelines_defaults():
    recipe = Recipe.from_dict({"prune": {"layers": {"ip1": 0.5}}, "quantize": {}})
    prune, quantize, encode = recipe.prune, recipe.quantize, recipe.encode
    assert (prune.rule, prune.schedule, prune.iterations, prune.every, prune.l1) == ("sparsity", "iterative", 1, 100, 0)
    assert prune.retrain == TrainConfig() and recipe.train is None
    assert (quantize.method, quantize.init, quantize.iters, quantize.fc_bits, quantize.conv_bits) == (
        "kmeans", "linear", 100, 5, 8)
    assert quantize.finetune.epochs == 0  # no [quantize.finetune], or one without epochs: no fine-tuning
    assert Recipe.from_dict({"quantize": {"finetune": {"lr": 1e-3}}}).quantize.finetune.epochs == 0
    assert (encode.values, encode.fc_gap_bits, encode.conv_gap_bits) == ("f32", "auto", "auto")


def test_per_layer_settings_fall_back_to_the_kind():
    recipe = Recipe.from_dict({"quantize": {"fc_bits": 4, "conv_bits": 6, "layers": {"ip1": 3}},
                               "encode": {"fc_gap_bits": 5, "layers": {"conv1": "auto"}}})
    kinds = {"conv1": "conv", "conv2": "conv", "ip1": "fc", "ip2": "fc"}
    assert recipe.quantize.bits(kinds) == {"conv1": 6, "conv2": 6, "ip1": 3, "ip2": 4}
    assert recipe.encode.gap_bits(kinds) == {"conv1": "auto", "conv2": "auto", "ip1": 5, "ip2": 5}
    with pytest.raises(UserError, match=r"^recipe: \[quantize.layers\] ip1 = 'auto' \(a string\): expected an "
                                        r"integer in 1..8$"):
        Recipe.from_dict({"quantize": {"layers": {"ip1": "auto"}}})
    with pytest.raises(UserError, match=r"^recipe: \[encode.layers\] ip1 = 0: expected an integer in 1..8 or 'auto'$"):
        Recipe.from_dict({"encode": {"layers": {"ip1": 0}}})


def test_dataset_overrides_apply_to_their_data_set_only():
    recipe = Recipe.from_dict({"prune": {"iterations": 5, "layers": {"ip1": 0.9, "ip2": 0.8},
                                         "dataset": {"fashion-mnist": {"iterations": 2, "layers": {"ip1": 0.7}}}},
                               "quantize": {"fc_bits": 5}})
    fashion = recipe.for_dataset("fashion-mnist")
    assert fashion.prune.iterations == 2 and fashion.prune.layers == {"ip1": 0.7, "ip2": 0.8}
    assert fashion.quantize == recipe.quantize
    assert recipe.for_dataset("mnist") is recipe and recipe.for_dataset("mnist").prune.iterations == 5
    with pytest.raises(UserError, match=r"^recipe: \[prune.dataset.fashion-mnist.layers\] the model has no "
                                        r"layer 'ip11' \(did you mean 'ip1'\?\)$"):
        Recipe.from_dict({"prune": {"layers": {"ip1": 0.9}, "dataset": {"fashion-mnist": {"layers": {"ip11": 0.5}}}}}
                         ).check_layers(["ip1", "ip2"])


@pytest.mark.parametrize("prune, message", [
    ({"rule": "global", "sparsity": 0.9, "layers": {"ip1": 0.5}},
     "[prune] rule = 'global' prunes every layer to one threshold; drop [prune.layers] or use rule = 'sparsity'"),
    ({"sparsity": 0.9, "layers": {"ip1": 0.5}},
     "[prune] sparsity is the overall target of rule = 'global'; with rule = 'sparsity' give per-layer values "
     "in [prune.layers]"),
    ({"schedule": "gradual", "rule": "std", "layers": {"ip1": 1.0}},
     "[prune] schedule = 'gradual' prunes to the per-layer sparsities of [prune.layers]; it needs "
     "rule = 'sparsity', got 'std'"),
    ({"rule": "std"}, "[prune] rule = 'std' needs a [prune.layers] table (layer = quality factor)"),
    ({"layers": {"ip1": 0.5}, "every": 0}, "[prune] every = 0: expected an integer >= 1"),
    ({"layers": {"ip1": True}}, "[prune.layers] ip1 = True (true or false): expected a number >= 0"),
])
def test_prune_settings_that_would_be_ignored_or_crash_are_refused(prune, message):
    with pytest.raises(UserError) as err:
        Recipe.from_dict({"prune": prune})
    assert str(err.value) == f"recipe: {message}"
