"""Research analyses, not policies a platform could run: open-loop schedules searched against the simulator
(``open_loop``), one-step lookahead over a base policy (``rollout``) and model-predictive control from the fluid
bound (``mpc``). Each runs as ``python -m agents.analysis.<name>``."""
