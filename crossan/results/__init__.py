"""Stage 3: the paper's tables and figures from the runs of stage 2."""
