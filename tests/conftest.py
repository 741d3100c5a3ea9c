import pytest

from mmrec.testing import sample_shards


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory):
    """SYNTHETIC shards shared by the tests that only read them: 48 items, 8 segments, 4 topics."""
    folder = tmp_path_factory.mktemp("sample")
    sample_shards(folder, items=48, segments=8, topics=4, shard_size=16)
    return folder
