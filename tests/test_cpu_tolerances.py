"""The comparison helpers of conftest allow what float32 drift explains and nothing more: a score 1e-5 off,
a tag within 1e-5 of its threshold on one side only. They fail on anything else."""

from __future__ import annotations

import numpy as np
import pytest


def test_scores_close_within_1e_5_only(assert_scores_close):
    assert_scores_close(np.float32([0.25, 0.5]), [0.25 + 9e-6, 0.5 - 9e-6])
    with pytest.raises(AssertionError):
        assert_scores_close([0.25], [0.25 + 2e-5])
    with pytest.raises(AssertionError, match="never compare tighter"):
        assert_scores_close([0.25], [0.25], atol=1e-6)


def test_a_tag_near_its_threshold_may_be_on_one_side_only(assert_same_tags):
    names, thresholds = ["cat", "dog", "owl"], [0.5, 0.7, 0.9]
    want = [[("cat", 0.8), ("dog", 0.700004)]]
    assert_same_tags([[("cat", 0.800001)]], want, names=names, thresholds=thresholds)  # dog: 4e-6 above 0.7
    assert_same_tags([[("cat", 0.8), ("owl", 0.900003)]], [[("cat", 0.8)]], names=names, thresholds=thresholds)
    # names only on one side: the reference scores decide
    assert_same_tags([[("cat", 0.8)]], [["cat", "dog"]], names=names, thresholds=thresholds,
                     probabilities=[[0.8, 0.699996, 0.1]])


@pytest.mark.parametrize("got", [
    [[("cat", 0.8)]],  # dog missing, and 0.2 above its threshold
    [[("cat", 0.8), ("dog", 0.9), ("owl", 0.95)]],  # an extra tag far from its threshold
    [[("dog", 0.9), ("cat", 0.8)]],  # another order
    [[("cat", 0.8), ("dog", 0.90002)]],  # a probability 2e-5 off
])
def test_anything_else_fails(assert_same_tags, got):
    with pytest.raises(AssertionError):
        assert_same_tags(got, [[("cat", 0.8), ("dog", 0.9)]], names=["cat", "dog", "owl"], thresholds=[0.5, 0.7, 0.9])


def test_repeated_names_use_any_of_their_thresholds(assert_same_tags):
    """Chinese names repeat with other thresholds: a one-sided tag near any of them is allowed."""
    assert_same_tags([[("猫", 0.600002)]], [[]], names=["猫", "猫"], thresholds=[0.9, 0.6])
    with pytest.raises(AssertionError):
        assert_same_tags([[("猫", 0.75)]], [[]], names=["猫", "猫"], thresholds=[0.9, 0.6])


def test_near_threshold_marks_the_decisions_that_may_flip(near_threshold):
    probs = np.float32([[0.500004, 0.52, 0.699999]])
    assert near_threshold(probs, [0.5, 0.5, 0.7]).tolist() == [[True, False, True]]
    assert near_threshold(probs, 0.52).tolist() == [[False, True, False]]
