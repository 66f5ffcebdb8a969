"""Class activation maps (chimeramix/cam.py): the map is the class's evidence (its spatial mean plus the bias is
the logit) for every network; predict --cam and the run's cams.png on a tiny run."""

import pytest
import torch
from PIL import Image

from chimeramix.cam import activation_maps
from chimeramix.config import ClassifierConfig, make_config
from chimeramix.errors import ChimeraMixError
from chimeramix.models import build_classifier
from chimeramix.predict import predict_images
from chimeramix.train.classifier import fit_classifier


@pytest.mark.parametrize("arch, kw", [("wrn16-2", {}), ("resnet50", {}), ("resnet18", {"input_size": 48})])
def test_a_class_map_averages_to_the_class_logit_on_every_network(arch, kw):
    torch.manual_seed(0)
    net = build_classifier(arch, 5, **kw).eval()
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    cls = torch.tensor([0, 3, 4])
    raw, scaled = activation_maps(net, x, cls)
    with torch.no_grad():
        logits = net(x)
    got = (raw.mean((1, 2)) + net.fc.bias[cls]).detach()
    assert got.tolist() == pytest.approx(logits[torch.arange(3), cls].tolist(), abs=1e-4)
    assert scaled.shape == (3, 32, 32) and scaled.min() >= 0 and scaled.flatten(1).amax(1).max() <= 1
    # each map scaled to its own peak; one with no positive evidence anywhere (ResNet-50's 1 x 1 map at 32 px) is 0
    peaks, evidence = scaled.flatten(1).amax(1), raw.flatten(1).amax(1)
    assert ((peaks > 0.99) & (evidence > 0) | (peaks == 0) & (evidence <= 0)).all()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cam") / "clf"
    return fit_classifier(make_config(ClassifierConfig, "fast", data="digits", spc=3, seed=0, device="cpu",
                                      arch="wrn16-2", batch_size=6, steps=4, log_every=2, out=str(out))).run_dir


def test_a_finished_run_shows_test_images_it_gets_right_and_wrong_with_their_maps(run):
    with Image.open(run / "cams.png") as png:
        w, h = png.size
    assert h > 4 * w // 3  # eight rows of three panels: taller than wide
    assert "![class activation maps](cams.png)" in (run / "report.md").read_text()


def test_predict_cam_writes_a_map_per_image_and_the_true_class_map_in_a_class_folder(run, tmp_path):
    from chimeramix.data.sources import open_source

    test = open_source("digits").load("test")
    (tmp_path / "in" / "7").mkdir(parents=True)
    for i in range(2):
        Image.fromarray(test.images[i].permute(1, 2, 0).numpy()).save(tmp_path / "in" / "7" / f"a{i}.png")
    Image.fromarray(test.images[2].permute(1, 2, 0).numpy()).save(tmp_path / "in" / "loose.png")
    r = predict_images(run, [tmp_path / "in"], cam=tmp_path / "maps")
    files = sorted(p.name for p in (tmp_path / "maps").iterdir())
    assert r.cam == str(tmp_path / "maps") and len(files) == 3 and files[0].startswith("00000-")
    sizes = {}
    for f in files:
        with Image.open(tmp_path / "maps" / f) as png:
            sizes[f.split("-", 1)[1]] = png.size
    # an image in a class folder gets a third panel (the true class's map); one outside it does not
    assert sizes["a0.png"][0] > sizes["loose.png"][0]
    with pytest.raises(ChimeraMixError, match="already holds files: choose another folder, or --force"):
        predict_images(run, [tmp_path / "in"], cam=tmp_path / "maps")
    (tmp_path / "maps" / "mine.txt").write_text("kept")
    predict_images(run, [tmp_path / "in"], cam=tmp_path / "maps", force=True)
    assert (tmp_path / "maps" / "mine.txt").read_text() == "kept"  # --force writes maps, removes nothing
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ChimeraMixError, match="is a file: pass a folder"):
        predict_images(run, [tmp_path / "in"], cam=tmp_path / "afile")
