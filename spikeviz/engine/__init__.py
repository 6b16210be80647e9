"""The event-driven engine: LIF layers updated only when spikes arrive (see ``kernels``)."""

from spikeviz.engine.kernels import Dynamics
from spikeviz.engine.network import (
    Network,
    Simulator,
    check_kappas,
    init_network,
    make_dynamics,
)

__all__ = ["Dynamics", "Network", "Simulator", "check_kappas", "init_network", "make_dynamics"]
