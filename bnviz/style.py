"""How runs are named and coloured wherever they are shown: the app, the reports, the command line.

One label and one colour per ``norm``, so a run is called and drawn the same everywhere.
The data (``bnviz.views``) carries the norm; the figures and texts look its name up here.
"""

NORM_LABELS = {"none": "no BN", "batchnorm": "BatchNorm", "noisy-batchnorm": "noisy BN", "noise": "noise only"}
RUN_COLORS = {"none": "#555555", "batchnorm": "#1f6fd1", "noisy-batchnorm": "#e07b00", "noise": "#c62828"}
