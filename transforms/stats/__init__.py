"""Dataset-wide numbers: composition and sample weights, reweighting, moments, model scores, accounting."""
