"""The plan: compiled from config (pure), shown by ``engine plan``, executed by ``engine run``."""

from engine.plan.compile import compile_plan
from engine.plan.model import FineTuneNode, JudgeSpec, Plan, SampleGroup, StateNode

__all__ = ["compile_plan", "Plan", "FineTuneNode", "StateNode", "SampleGroup", "JudgeSpec"]
