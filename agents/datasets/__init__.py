"""Offline datasets: episodes of any policy ``evaluate.py`` accepts, recorded in Minari's format.

``record_dataset`` is the library call; ``python -m agents.datasets`` its command line.
"""

from .record import DatasetError, record_dataset

__all__ = ["DatasetError", "record_dataset"]
