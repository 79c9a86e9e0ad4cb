"""Test-wide settings: headless Qt, deterministic torch, small thread count for this 2-core machine."""
import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
