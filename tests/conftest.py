import os

import torch

os.environ.setdefault("MOT_PROGRESS", "0")
torch.set_num_threads(min(2, os.cpu_count() or 1))


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: trains a model for more than a few seconds")
    config.addinivalue_line("markers", "book: builds the HTML book (about a minute)")
