"""How runs are named and coloured wherever they are shown: the app, the reports, the command line.

One label and one colour per ``norm``, so a run is called and drawn the same everywhere.
The data (``bnviz.views``) carries the norm; the figures and texts look its name up here.
"""

NORM_LABELS = {"none": "no BN", "batchnorm": "BatchNorm", "noisy-batchnorm": "noisy BN", "noise": "noise only",
               "layernorm": "LayerNorm", "groupnorm": "GroupNorm", "instancenorm": "InstanceNorm", "rmsnorm": "RMSNorm"}
RUN_COLORS = {"none": "#555555", "batchnorm": "#1f6fd1", "noisy-batchnorm": "#e07b00", "noise": "#c62828",
              "layernorm": "#2e7d32", "groupnorm": "#8e24aa", "instancenorm": "#00897b", "rmsnorm": "#6d4c41"}


def run_label(norm: str, dropout: float = 0.0) -> str:
    """A run's name: its norm, and its dropout rate when it has one (runs compared by dropout differ in name)."""
    return NORM_LABELS[norm] + (f" + dropout {dropout:g}" if dropout else "")


def run_color(norm: str, dropout: float = 0.0) -> str:
    """A run's colour: its norm's, lightened (40% toward white) when it has dropout."""
    color = RUN_COLORS[norm]
    if not dropout:
        return color
    channels = (int(color[i:i + 2], 16) for i in (1, 3, 5))
    return "#" + "".join(f"{round(c + 0.4 * (255 - c)):02x}" for c in channels)
