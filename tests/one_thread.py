"""A module-scoped fixture for test files of tiny models: torch on one thread (faster, and far faster on a busy
shared machine where two threads spin waiting for each other). Import it into a test module to use it."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
