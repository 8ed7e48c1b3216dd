"""matplotlib, set up once for every stage: the headless Agg backend (no display on cluster nodes),
and no TeX-like math parsing, so a run named "$x^2$" is drawn as written instead of failing.

Import pyplot from here, never directly: the backend must be chosen before pyplot is first imported.
"""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

plt.rcParams["text.parse_math"] = False

__all__ = ["plt"]
