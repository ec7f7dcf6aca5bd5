"""The stages of the data path: score, thresholds (percentiles and the plan), select."""
