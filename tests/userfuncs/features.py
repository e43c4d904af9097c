"""A user's own preprocessing functions, imported by `module:function` from the config."""
import numpy as np


def log_pt(inputs):
    pt = inputs.role("pt")
    return {"log_pt": np.where(inputs.mask, np.log(np.where(inputs.mask, pt, 1.0)), 0.0)}


def jet_mass_over_pt(inputs):
    return {"m_over_pt": inputs.arrays["jet_m"] / inputs.role("pt")}


def wrong_shape(inputs):
    return {"x": np.zeros(3)}
