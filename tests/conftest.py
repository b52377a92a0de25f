import numpy as np
import pyro
import pytest
import torch


@pytest.fixture(autouse=True)
def _fresh_state():
    """Each test starts from an empty param store and fixed seeds."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    yield
    pyro.clear_param_store()


def small_groups(n=40, seed=0, missing=True):
    """Three groups (widths 3, 3, 2) with a few whole groups missing."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 2))
    groups = {
        "a": z @ rng.standard_normal((2, 3)),
        "b": z @ rng.standard_normal((2, 3)),
        "c": z @ rng.standard_normal((2, 2)),
    }
    if missing:
        groups["a"][1] = np.nan
        groups["b"][2:5] = np.nan
        groups["c"][0] = np.nan
    return groups


@pytest.fixture
def groups():
    return small_groups()


@pytest.fixture
def tiny_torch_threads():
    torch.set_num_threads(1)
