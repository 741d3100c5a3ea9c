import pytest

from mmrec import MMRecError, Registry, UsageError


def test_register_build_and_pass_through():
    reg = Registry("widget")

    @reg.register("double")
    def double(x, *, times=2):
        return x * times

    assert reg.build("double", 3) == 6
    assert reg.build("double", 3, times=3) == 9
    obj = object()
    assert reg.build(obj) is obj
    assert "double" in reg and reg.names() == ["double"]


def test_duplicate_and_unknown_names_are_clear_errors():
    reg = Registry("widget")
    reg.register("a", lambda: 1)
    reg.register("b", lambda: 2)
    with pytest.raises(UsageError, match="already registered"):
        reg.register("a", lambda: 3)
    with pytest.raises(UsageError, match=r"unknown widget 'c'; known: a, b"):
        reg.get("c")
    assert issubclass(UsageError, MMRecError) and issubclass(UsageError, ValueError)


def test_lazy_entries_import_on_first_lookup():
    reg = Registry("thing")
    reg.register("dumps", "json:dumps")
    assert reg.build("dumps", [1]) == "[1]"
    reg.register("broken", "json:no_such_attr")
    with pytest.raises(AttributeError):
        reg.get("broken")
