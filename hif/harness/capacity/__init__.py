"""``hif capacity``: the highest open-loop rate at which every SLO gate holds, per attach rate."""
