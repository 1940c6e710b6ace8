"""The repository's paths, defined once for every test (pyproject puts tests/ on sys.path: `from paths import MODELS`)."""
from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "graphc"
MODELS = REPO / "models"
MODEL_FILES = sorted(MODELS.glob("*.nn"))
# The design notes and the real data sets live beside the repository, in the shared folder.
SHARED = REPO.parent / "shared"
DESIGN_MD = SHARED / "DESIGN.md"


def shared_datasets() -> Path:
    """Return where the real MNIST/Fashion-MNIST files are: the first entry of $GRAPHC_DATA, else ../shared/datasets."""
    env = os.environ.get("GRAPHC_DATA")
    return Path(env.split(os.pathsep)[0]) if env else SHARED / "datasets"
