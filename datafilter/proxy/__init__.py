"""Proxy models for ``datafilter evaluate``: the texts each candidate trains on, the training
and loss of one small causal LM, and the comparison of candidates against a random control."""
