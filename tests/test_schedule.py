import pytest

from critical_periods.schedule import LrFactor, lr_factor, total_epochs


def test_after_deficit_mode_adds_clean_epochs_after_the_window():
    assert total_epochs("after_deficit", deficit_end=30, epochs=999, epochs_after_deficit=20) == 50
    assert total_epochs("fixed", deficit_end=30, epochs=60, epochs_after_deficit=999) == 60


def test_fixed_mode_rejects_a_window_past_the_end():
    with pytest.raises(ValueError, match=r"ends at epoch 70.*schedule.epochs=60"):
        total_epochs("fixed", deficit_end=70, epochs=60, epochs_after_deficit=0)


@pytest.mark.parametrize("mode,kwargs,match", [
    ("weekly", {}, "schedule.mode='weekly'"),
    ("after_deficit", {"epochs_after_deficit": -1}, "schedule.epochs_after_deficit=-1"),
    ("fixed", {"epochs": 0}, "schedule.epochs=0"),
])
def test_bad_schedule_names_the_key(mode, kwargs, match):
    args = {"deficit_end": 0, "epochs": 10, "epochs_after_deficit": 10, **kwargs}
    with pytest.raises(ValueError, match=match):
        total_epochs(mode, **args)


def test_lr_factor_kinds_and_restart_at_deficit_end():
    assert [LrFactor("constant")(e) for e in range(3)] == [1.0, 1.0, 1.0]
    assert [LrFactor("exponential", gamma=0.5)(e) for e in range(3)] == [1.0, 0.5, 0.25]
    assert [LrFactor("step", gamma=0.1, step_size=2)(e) for e in range(5)] == pytest.approx([1, 1, 0.1, 0.1, 0.01])
    restarted = lr_factor("exponential", 0.5, 1, restart=True, deficit_end=2, deficit_length=2)
    assert [restarted(e) for e in range(5)] == [1.0, 0.5, 1.0, 0.5, 0.25]
    # Without a deficit there is nothing to restart at.
    assert lr_factor("exponential", 0.5, 1, restart=True, deficit_end=0, deficit_length=0).restart_epoch is None
    with pytest.raises(ValueError, match="schedule.lr_schedule='cosine'"):
        lr_factor("cosine", 0.5, 1, restart=False, deficit_end=0, deficit_length=0)
