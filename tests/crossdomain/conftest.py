"""Fixtures shared by the cross-domain tests."""

import pytest
from cdr_synth import write_pair


@pytest.fixture(scope="module")
def small_pair(tmp_path_factory):
    """A SYNTHETIC pair folder (cdr_synth.write_pair, 6 tastes, 40 cold users a domain), read-only for the tests."""
    root = tmp_path_factory.mktemp("small_pair")
    write_pair(root, users=240, items=(1200, 1300), groups=6, per_user=6, cold=40)
    return root
