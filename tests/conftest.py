import os

# Idle OpenMP threads sleep instead of spinning (as the CLI sets it): spinning threads slow the
# torch CPU paths many times over on a busy 2-core machine. Must precede the first torch import.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
