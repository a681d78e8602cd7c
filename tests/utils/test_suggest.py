"""Did-you-mean hints: the closest name above a cutoff, and the hint appended to error messages."""

from stica_slowfast.utils.suggest import closest, did_you_mean


def test_closest_respects_the_cutoff():
    names = ["transformer", "gap"]
    assert closest("transfomer", names) == "transformer"
    assert closest("xyz", names) is None
    assert closest("xyz", names, cutoff=0.0) in names  # cutoff 0 always names one
    assert closest("gap", []) is None


def test_hint_quotes_names_but_not_config_keys():
    assert did_you_mean("gap") == "; did you mean 'gap'?"
    assert did_you_mean("SOLVER.BASE_LR", quote=False) == "; did you mean SOLVER.BASE_LR?"
    assert did_you_mean(None) == ""
