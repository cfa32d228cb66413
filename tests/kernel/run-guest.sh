#!/bin/sh
# /payload/run.sh inside the VM: the scenario against the real kernel.
MODE=guest exec /payload/scenario.sh
