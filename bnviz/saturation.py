"""What counts as saturated, per activation: one definition for the statistics that measure
it (``bnviz.stats``), the figures that draw it and the page that explains it.

No torch here: the web server, whose runs train in other processes, never needs to load it.
"""

import math

LN19 = math.log(19)  # sigmoid(x) < 0.05 or > 0.95 exactly when |x| > ln(19) ~ 2.944
SATURATION_THRESHOLD = {"sigmoid": LN19, "tanh": LN19 / 2}  # tanh(x) = 2 sigmoid(2x) - 1: |tanh| > 0.9
DEAD_ACTIVATIONS = ("relu", "leaky-relu", "gelu")  # "saturated" = on the flat side, x <= 0
NEAR_ZERO = 0.05  # fastai's ActivationStats "near zero": the share of a layer's output at or below 0.05
