"""Agents that act in SaccadeMNIST, the protocol they follow (agents/base.py), and the one
rollout loop that runs them (agents/rollout.py)."""
from .base import LOOK, Agent, check_agent, make_action, must_answer

__all__ = ["Agent", "LOOK", "check_agent", "make_action", "must_answer"]
