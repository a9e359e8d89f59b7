def test_demo_end_to_end(run_cli, tmp_path):
    code, out, err = run_cli("demo", "--out", tmp_path)
    assert code == 0, err
    last = out.strip().splitlines()[-1]
    assert last.startswith("test accuracy: ")
    assert float(last.split(": ")[1]) >= 0.95
    run = tmp_path / "demo-lenet-digits"
    for name in ("config.yaml", "history.csv", "train.log", "labels.txt", "preprocess.json",
                 "checkpoints/best.pt", "checkpoints/last.pt", "checkpoints/lenet-0006.pt", "plots/loss.png",
                 "plots/accuracy.png", "eval/test-best/metrics.json", "sample_test_digit.png"):
        assert (run / name).is_file(), name
    assert "held-out image" in out and "true class" in out
    measured = next(line for line in out.splitlines() if line.startswith("measured: "))  # the demo times itself
    assert "(training, 6 epochs: " in measured and "evaluation and prediction: " in measured
    assert float(measured.split()[1]) > 0
    assert any(p.name.startswith("events.out.tfevents") for p in (run / "tensorboard").iterdir())
