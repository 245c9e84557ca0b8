"""Research analyses, not policies a platform could run: open-loop schedules searched against the simulator
(``open_loop``), one-step lookahead over a base policy (``rollout``), model-predictive control from the fluid
bound (``mpc``), plain SB3 PPO at its defaults against the status quo (``plain_sb3``), how loudly each
world of a training mixture speaks in the shared reward normalisation (``reward_spread``) and what the router's
throttle memory costs when banks go down on schedule (``throttle_memory``). Each runs as
``python -m agents.analysis.<name>``."""
