"""Import this module to pay torch's first-use costs once, before anyone waits for them.

torch loads some of its modules lazily on the first optimizer: ~2 s on this machine, which
stalled the first runs of a fresh server (``../shared/streamlit-notes.md``). The fork server
that the app's runs start from imports it (``bnviz.serve.process``), so every run inherits a warm
torch and the default dataset, shared copy-on-write; with runs in threads, the app's server
imports it itself. Everything it made is then frozen (``gc.freeze``), as Python's documentation
advises before forking: a run's garbage collections would otherwise touch every object it
inherited and copy their pages.
"""

import gc

import torch

from bnviz.config import RunConfig
from bnviz.data import load_dataset

torch.set_num_threads(1)  # first, so that no thread pool exists when the fork server forks
torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
load_dataset(RunConfig().dataset)
# Last (warm is also last in the fork server's PRELOAD): a run forked from here never scans, so never
# writes to, the objects made so far; their pages stay shared instead of being copied into every run.
gc.freeze()
