import pytest

from deepvision.config.schema import ScheduleConfig
from deepvision.engine.schedules import Schedule, parse_ranges
from deepvision.errors import UserError
from deepvision.runs.history import describe_lrs


def test_piecewise_reference_vgg_schedule():
    # V1: 1-50: 1e-2; 51-70: 1e-3; 71-80: 1e-4 (1-based inclusive epochs; Schedule takes 0-based epochs)
    s = Schedule(ScheduleConfig(name="piecewise", ranges=["1-50: 1e-2", "51-70: 1e-3", [71, 80, 1e-4]]), 0.01, 80)
    assert s(49) == 1e-2  # epoch 50
    assert s(50) == 1e-3  # epoch 51
    assert s(69) == 1e-3 and s(70) == 1e-4 and s(79) == 1e-4
    assert s(85) == 1e-4  # past the last range: keep the last rate
    assert not s.per_iteration


def test_piecewise_range_formats_and_errors():
    assert parse_ranges([{"epochs": "1-3", "lr": 0.1}, "4: 0.01"]) == [(1, 3, 0.1), (4, 4, 0.01)]
    with pytest.raises(UserError, match="must start at epoch 1"):
        parse_ranges(["2-5: 0.1"])
    with pytest.raises(UserError, match="contiguous"):
        parse_ranges(["1-5: 0.1", "7-9: 0.01"])
    for entry in ("1 to 5 = 0.1", "1-2: 1_0", "1-2: ١e-2", "١-2: 0.1", {"epochs": "1-2", "lr": "1_0"}):
        with pytest.raises(UserError, match="must look like"):  # '1_0' trained at a rate of 10
            parse_ranges([entry])
    with pytest.raises(UserError, match="ranges is empty"):
        Schedule(ScheduleConfig(name="piecewise"), 0.1, 10)


def test_step_multistep_poly_cosine_warmup():
    step = Schedule(ScheduleConfig(name="step", step_size=3, gamma=0.5), 1.0, 10)
    assert [step(e) for e in range(7)] == [1, 1, 1, 0.5, 0.5, 0.5, 0.25]
    multi = Schedule(ScheduleConfig(name="multistep", milestones=[3, 5], gamma=0.1), 1.0, 10)
    assert [round(multi(e), 6) for e in range(6)] == [1, 1, 0.1, 0.1, 0.01, 0.01]
    poly = Schedule(ScheduleConfig(name="poly", power=2.0), 1.0, 10)
    assert poly(5) == pytest.approx(0.25) and poly(10) == 0.0
    cos = Schedule(ScheduleConfig(name="cosine", min_lr=0.1), 1.0, 10)
    assert cos(0) == 1.0 and cos(5) == pytest.approx(0.55) and cos(10) == pytest.approx(0.1)
    warm = Schedule(ScheduleConfig(name="constant", warmup_epochs=2, warmup_start_factor=0.1), 1.0, 10)
    assert warm(0) == pytest.approx(0.1) and warm(1) == pytest.approx(0.55) and warm(2) == 1.0
    assert warm(0, 0.5) == pytest.approx(0.325) and warm.per_iteration


def test_unknown_schedule_lists_valid_names():
    with pytest.raises(UserError, match="unknown schedule 'cosin' .*did you mean: cosine.*valid: constant"):
        Schedule(ScheduleConfig(name="cosin"), 0.1, 10)


def test_describe_lrs_compresses_epoch_ranges():
    lrs = [1e-2] * 3 + [1e-3] * 2 + [1e-4]
    assert describe_lrs(lrs) == "1-3: 0.01; 4-5: 0.001; 6: 0.0001"
    assert describe_lrs([]) == ""


@pytest.mark.parametrize(("given", "named"), [
    ({"ranges": [[1, 1, 0.1], [1, 1, 0.2]]}, "schedule.ranges is read by the piecewise schedule, not constant: set "
                                             "schedule.name=piecewise, or leave schedule.ranges out (on resume: --set "
                                             "schedule.ranges=[])"),
    ({"name": "cosine", "milestones": [1]}, "schedule.milestones is read by the multistep schedule, not cosine"),
    ({"name": "cosine", "step_size": 1}, "schedule.step_size is read by the step schedule, not cosine"),
    ({"name": "step", "power": 3.0}, "schedule.power is read by the poly schedule, not step"),
    ({"name": "piecewise", "ranges": ["1-2: 0.1"], "gamma": 0.5},
     "schedule.gamma is read by the step and multistep schedule, not piecewise"),
    ({"name": "step", "min_lr": 0.01}, "schedule.min_lr is read by the poly and cosine schedule, not step"),
    ({"warmup_start_factor": 0.5}, "schedule.warmup_start_factor is read only with schedule.warmup_epochs > 0"),
])
def test_an_option_of_another_schedule_is_refused(given, named):
    """schedule.ranges given with the default constant schedule was recorded and never read: the run trained at
    optim.lr without a word."""
    with pytest.raises(UserError) as info:
        Schedule(ScheduleConfig(**given), 0.1, 10)
    assert str(info.value).startswith(named), info.value


def test_every_recipe_reads_the_schedule_options_it_gives():
    from deepvision.config.io import load_config
    from deepvision.recipes import recipe_names, recipe_path

    for name in recipe_names():
        cfg = load_config(recipe_path(name))
        Schedule(cfg.schedule, cfg.optim.lr, cfg.train.epochs)
