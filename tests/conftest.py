import os

# Idle OpenMP threads sleep instead of spinning (as the CLI sets it): spinning threads slow the
# torch CPU paths many times over on a busy 2-core machine. Must precede the first torch import.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


import pytest  # noqa: E402


@pytest.fixture
def one_thread():
    """One intra-op thread for modules of small tensors: faster on 2 often-shared cores, and
    immune to CPU contention."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
