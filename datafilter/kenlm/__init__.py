"""KenLM: the text normaliser, the model folder, the native line scorer, training and import."""
