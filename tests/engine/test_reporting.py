import io

from deepvision.engine.reporting import Reporter


def test_log_file_gets_reference_format_lines(tmp_path):
    log = tmp_path / "train.log"
    out = io.StringIO()
    rep = Reporter(log, progress="auto", stream=out)
    assert not rep.use_bar  # not a terminal: plain lines
    rep.speedometer(0, 100, 5120.333, {"acc": 0.5, "top5": 0.9, "loss": 1.25})
    rep.metrics(0, "Validation", {"acc": 0.75, "top5": 1.0, "loss": 0.5}, console=False)
    rep.close()
    lines = [line.split(" ", 2)[2] for line in log.read_text().splitlines()]  # drop the date and time
    assert lines == [
        "Epoch[0] Batch [100]\tSpeed: 5120.33 samples/sec\tTrain-accuracy=0.500000",
        "Epoch[0] Batch [100]\tSpeed: 5120.33 samples/sec\tTrain-top_k_accuracy_5=0.900000",
        "Epoch[0] Batch [100]\tSpeed: 5120.33 samples/sec\tTrain-cross-entropy=1.250000",
        "Epoch[0] Validation-accuracy=0.750000",
        "Epoch[0] Validation-top_k_accuracy_5=1.000000",
        "Epoch[0] Validation-cross-entropy=0.500000",
    ]
    # the console counts epochs from 1; train.log keeps MXNet's 0-based Epoch[0]
    assert out.getvalue().splitlines() == ["epoch 1  batch 100  loss 1.25 acc 50.00% top5 90.00%  5,120 samples/s"]


def test_progress_bar_mode(tmp_path):
    out = io.StringIO()
    rep = Reporter(tmp_path / "train.log", progress="bar", stream=out)
    rep.start_epoch(0, 10, 3)
    for _ in range(10):
        rep.advance()
    rep.speedometer(0, 5, 100.0, {"acc": 0.5, "loss": 1.0})
    rep.echo("epoch 1/3 done")
    rep.end_epoch()
    rep.close()
    assert "epoch 1/3 done" in out.getvalue()
    assert "Train-accuracy=0.500000" in (tmp_path / "train.log").read_text()


def test_other_ranks_write_nothing(tmp_path):
    out = io.StringIO()
    rep = Reporter(tmp_path / "train.log", enabled=False, stream=out)
    rep.line("hello")
    rep.close()
    assert out.getvalue() == "" and not (tmp_path / "train.log").exists()
