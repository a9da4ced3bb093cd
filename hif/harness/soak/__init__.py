"""The soak runner: a plan of load segments run back to back, checkpointed, with drift analysis."""
