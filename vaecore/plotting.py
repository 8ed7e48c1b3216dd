"""matplotlib, set up once for every stage: the headless Agg backend (no display on cluster nodes).

Import pyplot from here, never directly: the backend must be chosen before pyplot is first imported.
"""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["plt"]
