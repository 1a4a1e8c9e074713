"""Feeders, power flow, state estimation and µPMU placement (gridlens seed S2)."""

from gridlens.grid.engines import ENGINES, PgmNetwork, PowerFlowResult, solve_power_flow
from gridlens.grid.feeder import Feeder, ieee15

__all__ = ["ENGINES", "Feeder", "PgmNetwork", "PowerFlowResult", "ieee15", "solve_power_flow"]
