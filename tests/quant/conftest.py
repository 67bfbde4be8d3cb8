"""Put the project root ahead of the test folders on sys.path.

Under `pytest` (not `python -m pytest`) only the test folders are on sys.path, and folders such as
`tests/tinysam` or `tests/calibration_data` then shadow the real packages as namespace packages.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
