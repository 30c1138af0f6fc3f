"""An asset's history as model rows (`streamapp.feature_messages`): the trailing complete run, at most a
window, in declared order; windows that share vector objects give the same rows as converted alone."""

from __future__ import annotations

import math

import numpy as np

from streamapp.feature_messages import trailing_rows, window_matrices

NAMES = ["b", "a"]


def vector(value: float) -> dict[str, float]:
    return {"a": value, "b": value * 10, "extra": -1.0}


def test_rows_follow_the_declared_order_and_stop_at_an_incomplete_vector() -> None:
    history = [vector(1.0), {"a": 2.0}, vector(3.0), {"a": 4, "b": 40}, vector(5.0)]
    assert trailing_rows(NAMES, history, limit=10) == [[30.0, 3.0], [40.0, 4.0], [50.0, 5.0]]
    assert trailing_rows(NAMES, history, limit=2) == [[40.0, 4.0], [50.0, 5.0]]
    assert trailing_rows(NAMES, [{"a": math.nan, "b": 1.0}], limit=3) == []


def test_windows_sharing_vectors_match_each_window_converted_alone() -> None:
    vectors = [vector(float(n)) for n in range(8)]
    vectors[2] = {"a": 1.0}  # breaks the runs of the windows that reach back past it
    histories = [vectors[: n + 1] for n in range(len(vectors))]  # one asset's events in one batch
    histories.append([vector(99.0)])
    matrices = window_matrices(NAMES, histories, limit=4)

    assert len(matrices) == len(histories)
    for history, matrix in zip(histories, matrices, strict=True):
        alone = np.asarray(trailing_rows(NAMES, history, 4), dtype=np.float64).reshape(-1, len(NAMES))
        np.testing.assert_array_equal(matrix, alone)
        assert matrix.dtype == np.float64 and matrix.shape[1] == 2
    assert matrices[2].shape == (0, 2)  # its own vector lacks "b"
    assert matrices[4].tolist() == [[30.0, 3.0], [40.0, 4.0]]
    assert matrices[7].tolist() == [[40.0, 4.0], [50.0, 5.0], [60.0, 6.0], [70.0, 7.0]]
    assert matrices[8].tolist() == [[990.0, 99.0]]


def test_random_histories_match_trailing_rows_whatever_their_values() -> None:
    """Odd values (missing, NaN, infinities, ints, booleans, text, overflowing sums) end a run exactly
    where `trailing_rows` says, for one, two and three model features."""
    import random

    rng = random.Random(5)
    odd = [None, math.nan, math.inf, -math.inf, 1, True, "x", 1e308]
    for _ in range(500):
        vectors = [
            {name: rng.random() if rng.random() < 0.75 else rng.choice(odd) for name in "abc" if rng.random() < 0.9}
            for _ in range(rng.randint(0, 10))
        ]
        histories = [vectors[: rng.randint(0, len(vectors))] for _ in range(rng.randint(1, 4))]
        limit = rng.randint(1, 5)
        for names in (["a"], ["b", "a"], ["a", "b", "c"]):
            for history, matrix in zip(histories, window_matrices(names, histories, limit), strict=True):
                expected = np.asarray(trailing_rows(names, history, limit), dtype=np.float64).reshape(-1, len(names))
                assert matrix.shape == expected.shape and matrix.dtype == np.float64
                np.testing.assert_array_equal(matrix, expected)
