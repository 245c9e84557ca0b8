"""payroute's agents, one room per role:

- ``agents.deciders``: the :class:`Policy` interface, the hand-written heuristics and trained agents behind it,
  and ``load_policy`` (light: no torch);
- ``agents.training``: stable-baselines3 training (hyper-parameter files, settings, networks, residual
  corrections, checkpoints, callbacks; ``run_training`` is ``train.py`` from Python);
- ``agents.evaluation``: every policy on the same seeds against the fluid bound, with statistics, tables,
  result files and plots (``evaluate.py`` from Python);
- ``agents.analysis``: research analyses (open-loop schedules, one-step lookahead, MPC from the bound).

``agents.algorithms`` is the one fact deciders and training share: which SB3 algorithms exist. Data:
``agents/hyperparams/*.yml`` (read by train.py and RL Zoo) and ``agents/scenarios/`` (training worlds that
are not built in).
"""
