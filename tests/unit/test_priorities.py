"""Priority classes can be added and overridden from configuration."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from scheduler.domain import priorities


@pytest.fixture(autouse=True)
def restore_classes() -> Iterator[None]:
    saved = dict(priorities.PRIORITY_CLASSES)
    yield
    priorities.PRIORITY_CLASSES.clear()
    priorities.PRIORITY_CLASSES.update(saved)


def test_configure_adds_and_overrides_classes() -> None:
    priorities.configure_priority_classes(
        [
            {"name": "spot-batch", "value": 5, "preemptible": True, "grace_s": 30},
            {"name": "batch", "value": 10, "preemptible": True, "grace_s": 15},
        ]
    )
    assert priorities.PRIORITY_CLASSES["spot-batch"].grace_s == 30
    assert priorities.PRIORITY_CLASSES["batch"].grace_s == 15
    assert "critical" in priorities.PRIORITY_CLASSES, "classes are never removed"
    assert priorities.lowest_preemptible_value() == 5
    assert set(priorities.preemptible_class_names()) == {"spot-batch", "batch", "normal"}


def test_a_class_needs_a_name_and_an_integer_value() -> None:
    with pytest.raises(ValueError, match="needs a name"):
        priorities.configure_priority_classes([{"value": "high"}])
