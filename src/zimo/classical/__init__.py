"""Classical text sub-models: character/word n-gram TF-IDF with logistic regression."""
