"""mmrec.config.check_bounds: the one range check of config fields (metadata min / max)."""

from dataclasses import dataclass, field

import pytest

from mmrec.config import build_config, check_bounds
from mmrec.errors import UsageError
from mmrec.rankers.gtr_data import GTRDataConfig
from mmrec.synthetic.live_sim import LiveSimConfig
from mmrec.synthetic.rank_sim import SimulationConfig


@dataclass
class _Sizes:
    count: int = field(default=3, metadata={"min": 1})
    rate: float = field(default=0.5, metadata={"min": 0, "max": 1})
    cap: int | None = field(default=None, metadata={"min": 1})
    free: float = -7.0

    def __post_init__(self) -> None:
        check_bounds(self)


@pytest.mark.parametrize("kwargs, message", [
    ({"count": 0}, "count must be an integer >= 1, got 0"),
    ({"count": 2.5}, "count must be an integer >= 1, got 2.5"),
    ({"count": True}, "count must be an integer >= 1, got True"),
    ({"rate": 1.5}, r"rate must be in \[0, 1\], got 1.5"),
    ({"rate": float("nan")}, r"rate must be in \[0, 1\], got nan"),
    ({"rate": "0.5"}, r"rate must be in \[0, 1\], got '0.5'"),
    ({"cap": 0}, "cap must be an integer >= 1, got 0"),
])
def test_a_field_outside_its_bounds_is_one_usage_error_naming_it(kwargs, message):
    with pytest.raises(UsageError, match=f"^{message}$"):
        _Sizes(**kwargs)


def test_values_inside_the_bounds_none_and_unbounded_fields_pass():
    assert _Sizes(count=1, rate=1, cap=None, free=-1e9) == _Sizes(1, 1.0, None, -1e9)
    assert build_config(_Sizes, {"count": 5, "cap": 2}).cap == 2


@pytest.mark.parametrize("cls, kwargs, name", [
    (LiveSimConfig, {"authors": 1}, "authors"), (LiveSimConfig, {"video_ratio": -0.1}, "video_ratio"),
    (SimulationConfig, {"topics": 1}, "topics"), (SimulationConfig, {"items": 0}, "items"),
    (GTRDataConfig, {"gift_length": 0}, "gift_length"),
])
def test_the_simulators_check_their_sizes_through_it(cls, kwargs, name):
    with pytest.raises(UsageError, match=f"^{name} must be "):
        cls(**kwargs)
