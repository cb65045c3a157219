import pytest

from dept_vl import ConfigError, budget_pairs, rank_for


def test_paper_pairs_for_t5_base():
    pairs = {(p.prompt_length, p.r): p for p in budget_pairs(768, 256, 100)}
    assert pairs[(60, 30)].params == 100 * 768
    assert pairs[(40, 45)].params == 100 * 768
    assert pairs[(100, 0)].params == 100 * 768


def test_every_pair_fits_and_r_is_maximal():
    d, s, m = 512, 128, 50
    for p in budget_pairs(d, s, m):
        assert p.params == p.prompt_length * d + s * p.r + p.r * d <= m * d
        assert p.prompt_length * d + s * (p.r + 1) + (p.r + 1) * d > m * d


def test_rank_for_and_errors():
    assert rank_for(768, 256, 100, 60) == 30
    assert [p.prompt_length for p in budget_pairs(768, 256, 100, step=20)] == [100, 80, 60, 40, 20]
    with pytest.raises(ConfigError):
        budget_pairs(768, 0, 100)
    with pytest.raises(ConfigError):
        rank_for(768, 256, 100, 101)
