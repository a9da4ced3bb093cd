"""``hif compare A B``: per metric, the value in each run, the difference, and whether it is beyond noise."""
