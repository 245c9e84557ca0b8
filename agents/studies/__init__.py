"""Studies: many training runs (algorithms x settings x scenarios x seeds) on Ray Tune, aggregated with rliable.

``spec`` reads and checks a study file (``quick.yml``, ``paper.yml``; no Ray needed), ``trial`` is one
``train.py`` run and its evaluation on the study's worlds, ``run`` spreads the trials with Ray Tune and
``aggregate`` reports them as RL papers do. ``python -m agents.studies quick`` runs the quick study; Ray,
Optuna and rliable come with the ``sweep`` extra (``pip install -e ".[sweep]"``).
"""

from .spec import StudyError, StudySpec, load_study

__all__ = ["StudyError", "StudySpec", "load_study"]
