"""Policies for payroute: hand-written heuristics and trained stable-baselines3 agents behind one interface."""
