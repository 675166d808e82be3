"""The run's file helpers, under the conditions a parallel sweep puts them in."""

from concurrent.futures import ThreadPoolExecutor

import pytest

from big2small.errors import OutputError
from big2small.files import writable_dir


def test_jobs_probing_one_cache_dir_at_once_all_find_it_writable(tmp_path):
    """Parallel sweep jobs share the base-model cache dir and probe it at the same moment."""
    cache = tmp_path / "cache" / "base_models"

    def probe_many(_):
        for _ in range(300):
            writable_dir(cache, "cache dir")

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(probe_many, range(4)))  # re-raises any OutputError of a thread
    assert list(cache.iterdir()) == []  # no probe left behind


def test_a_dir_that_cannot_be_made_is_an_output_error_naming_it(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OutputError, match="cannot write the cache dir .*file/sub"):
        writable_dir(blocker / "sub", "cache dir")
