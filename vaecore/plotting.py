"""matplotlib, set up once for every stage: the headless Agg backend (no display on cluster nodes),
no TeX-like math parsing, so a run named "$x^2$" is drawn as written instead of failing, and one
set of font sizes, so a figure looks the same whichever process (and stage before it) draws it.

Import pyplot from here, never directly: the backend must be chosen before pyplot is first imported.
"""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

plt.rcParams.update({"text.parse_math": False, "font.size": 9, "axes.titlesize": 10, "figure.titlesize": 11})

__all__ = ["plt"]
