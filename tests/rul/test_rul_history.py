"""The per-asset history table the RUL agent keeps (`tables.history.FeatureHistory`): a window grows to
the model's length, and a message redelivered after a crash gets the window it had when first applied."""

from __future__ import annotations

from typing import Any


def test_a_redelivered_message_gets_the_window_it_had_when_first_applied(faust_app: Any) -> None:
    from tables.history import rul_history

    rul_history.table.data.pop("h1", None)
    first = rul_history.append_and_window("h1", {"x": 1.0}, 0, 10)
    second = rul_history.append_and_window("h1", {"x": 2.0}, 0, 11)
    third = rul_history.append_and_window("h1", {"x": 3.0}, 0, 12)
    assert (first, second) == ([{"x": 1.0}], [{"x": 1.0}, {"x": 2.0}])
    assert rul_history.append_and_window("h1", {"x": 2.0}, 0, 11) == second
    assert rul_history.append_and_window("h1", {"x": 3.0}, 0, 12) == third
    assert rul_history.window("h1") == third  # nothing appended twice
    rul_history.table.data.pop("h1", None)
    rul_history.discard_pending()


def test_the_window_keeps_the_last_cycles_up_to_its_size(faust_app: Any, monkeypatch: Any) -> None:
    from tables.history import rul_history

    monkeypatch.setattr(rul_history, "_size", lambda: 3)
    rul_history.table.data.pop("h2", None)
    for offset in range(5):
        window = rul_history.append_and_window("h2", {"x": float(offset)}, 1, offset)
    assert window == [{"x": 2.0}, {"x": 3.0}, {"x": 4.0}]
    assert rul_history.table.data["h2"]["offsets"] == [2, 3, 4]
    rul_history.table.data.pop("h2", None)
    rul_history.discard_pending()
