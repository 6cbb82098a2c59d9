"""Running a component in amaranth.sim for the hw unit tests."""

from amaranth.sim import Simulator

__all__ = ["simulate"]


def simulate(dut, testbench, *processes):
    """Runs ``dut`` on a clock until ``testbench`` returns; ``processes`` run beside it."""
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for process in processes:
        sim.add_process(process)
    sim.add_testbench(testbench)
    sim.run()
