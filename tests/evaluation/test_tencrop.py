import json

import pytest
import torch

from deepvision.api import evaluate, train
from deepvision.errors import UserError
from deepvision.evaluation.tencrop import ten_crop
from tests.helpers import tiny_config


def test_ten_crop_offsets_and_mirrors():
    x = torch.arange(5 * 7).view(1, 5, 7)  # C x H x W
    crops = ten_crop(x, (3, 4))
    assert crops.shape == (10, 1, 3, 4)
    assert torch.equal(crops[0], x[:, 0:3, 0:4])  # top-left
    assert torch.equal(crops[1], x[:, 0:3, 3:7])  # top-right
    assert torch.equal(crops[2], x[:, 2:5, 0:4])  # bottom-left
    assert torch.equal(crops[3], x[:, 2:5, 3:7])  # bottom-right
    assert torch.equal(crops[4], x[:, 1:4, 1:5])  # centre: floor((7-4)/2)=1, floor((5-3)/2)=1
    for i in range(5):
        assert torch.equal(crops[5 + i], crops[i].flip(-1))
    batch = ten_crop(torch.zeros(2, 3, 8, 8), (6, 6))
    assert batch.shape == (2, 10, 3, 6, 6)


def test_evaluate_with_ten_crops_on_in_memory_data(tmp_path):
    cfg = tiny_config(2, max_samples=400, resize=32, image_size=28, test_fraction=0.2, test=None)
    cfg["data"]["augment"] = {"rand_crop": True, "rand_mirror": True}
    result = train(cfg, out=tmp_path, name="crops")
    one = evaluate(result.run_dir, data="test", quiet=True)
    ten = evaluate(result.run_dir, data="test", crops=10, quiet=True)
    assert one["samples"] == ten["samples"] == round(0.2 * 1797)
    assert ten["crops"] == 10 and 0.0 <= ten["rank1"] <= 1.0
    saved = json.loads((result.run_dir / "eval" / "test-best-10crop" / "metrics.json").read_text())
    assert saved["rank1"] == ten["rank1"]
    plain = train(tiny_config(1, max_samples=100), out=tmp_path, name="plain")
    with pytest.raises(UserError, match="10-crop needs images larger than the model input"):
        evaluate(plain.run_dir, data="val", crops=10, quiet=True)


def test_two_crops_average_each_image_with_its_mirror(tmp_path):
    from deepvision.evaluation.evaluate import collect_probs
    from deepvision.runs.loading import load_run

    result = train(tiny_config(1, max_samples=100), out=tmp_path, name="flip")
    loaded = load_run(result.run_dir, device=torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (6, loaded.pre.channels, *loaded.pre.size), dtype=torch.uint8, generator=g)
    y = torch.arange(6) % 3
    cpu = torch.device("cpu")
    plain, labels = collect_probs(loaded, [(x, y)], cpu)
    mirrored, _ = collect_probs(loaded, [(x.flip(-1), y)], cpu)
    both, labels2 = collect_probs(loaded, [(x, y)], cpu, crops=2)
    assert (labels == labels2).all() and not torch.allclose(torch.from_numpy(plain), torch.from_numpy(mirrored))
    assert torch.allclose(torch.from_numpy(both), torch.from_numpy((plain + mirrored) / 2), atol=1e-6)
    report = evaluate(result.run_dir, data="val", crops=2, quiet=True)
    assert report["crops"] == 2 and (result.run_dir / "eval" / "val-best-flip" / "metrics.json").is_file()


def test_ten_crops_without_room_to_crop_are_refused_before_the_model_loads(tmp_path, run_cli, monkeypatch, capsys):
    """Known from the run's preprocess.json: one line, nothing printed before it, the model never loaded."""
    from deepvision.evaluation import evaluate as evaluation

    plain = train(tiny_config(1, max_samples=100), out=tmp_path, name="plain")
    capsys.readouterr()  # training's own lines
    monkeypatch.setattr(evaluation, "load_run", lambda *a, **k: pytest.fail("the model was loaded"))
    code, out, err = run_cli("evaluate", plain.run_dir, "--crops", "10", "--data", "val", "--out", tmp_path / "e10")
    assert (code, out) == (2, "") and err == ("deepvision evaluate: error: 10-crop needs images larger than the model "
                                              "input: set data.resize (e.g. 256 for a 224 input) when training\n")
    assert not (tmp_path / "e10").exists()
