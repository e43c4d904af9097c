"""The selection language: ROOT-style precedence over uproot's function table, and nothing else."""
import numpy as np
import pytest

from root2hdf5.transforms.core.errors import ConfigError
from root2hdf5.transforms.rows.expressions import Expression

rng = np.random.default_rng(0)
V = {"jet_pt": rng.uniform(0, 1e6, 200), "jet_eta": rng.uniform(-3, 3, 200), "rho": rng.uniform(0, 20, 200),
     "flags": rng.integers(0, 16, 200)}


@pytest.mark.parametrize("text, expected", [
    ("jet_pt > 350e3 & abs(jet_eta) < 2", (V["jet_pt"] > 350e3) & (np.abs(V["jet_eta"]) < 2)),
    ("jet_pt > 350e3 && abs(jet_eta) < 2", (V["jet_pt"] > 350e3) & (np.abs(V["jet_eta"]) < 2)),
    ("jet_pt > 350e3 and abs(jet_eta) < 2", (V["jet_pt"] > 350e3) & (np.abs(V["jet_eta"]) < 2)),
    ("jet_pt < 1e5 | jet_pt > 9e5", (V["jet_pt"] < 1e5) | (V["jet_pt"] > 9e5)),
    ("jet_pt < 1e5 || rho > 10 && jet_eta > 0", (V["jet_pt"] < 1e5) | ((V["rho"] > 10) & (V["jet_eta"] > 0))),
    ("!(jet_eta > 0) & rho > 5", ~(V["jet_eta"] > 0) & (V["rho"] > 5)),
    ("not jet_eta > 0", ~(V["jet_eta"] > 0)),
    ("0.5 < abs(jet_eta) < 2", (np.abs(V["jet_eta"]) > 0.5) & (np.abs(V["jet_eta"]) < 2)),
    ("(flags & 4) != 0", (V["flags"] & 4) != 0),
    ("where(jet_eta > 0 & rho > 3, jet_pt, 0) > 2e5",
     np.where((V["jet_eta"] > 0) & (V["rho"] > 3), V["jet_pt"], 0) > 2e5),
    ("sqrt(jet_pt) / 1000 + rho**2 >= 1", np.sqrt(V["jet_pt"]) / 1000 + V["rho"] ** 2 >= 1),
])
def test_evaluates_like_numpy(text, expected):
    np.testing.assert_array_equal(Expression(text).evaluate(V), expected)


def test_symbols_are_the_branches_in_order():
    expression = Expression("jet_pt > 1 && !(jet_eta < 0) || rho > 3 & abs(jet_pt) > 0")
    assert expression.symbols == ["jet_pt", "jet_eta", "rho"]


@pytest.mark.parametrize("text, message", [
    ("__import__('os').system('true')", "unknown function"),
    ("abs(jet_pt).real > 0", "Attribute"),
    ("jet_pt[0] > 0", "Subscript"),
    ("(lambda: 1)()", "unknown function|Lambda"),
    ("sqrtt(jet_pt) > 1", "did you mean 'sqrt'"),
    ("jet_pt >", "not a valid expression"),
    ("jet_pt == 'a'", "numeric constants"),
    ("abs(jet_pt, out=jet_pt)", "keyword"),
])
def test_rejects_anything_outside_the_language(text, message):
    with pytest.raises(ConfigError, match=message):
        Expression(text, "input.selection")


# Branch names from real files (PHYSLITE, Delphes, Bacon), which are not Python names
N = {"Jet/Jet.PT": rng.uniform(0, 200, 50), "Jet/Jet.Eta": rng.uniform(-3, 3, 50),
     "AnalysisJetsAuxDyn.pt": rng.uniform(0, 2e5, 50), "HLT_e5-etcut!": rng.integers(0, 2, 50),
     "Jet/Jet.Tau[5]": rng.uniform(0, 1, 50)}


@pytest.mark.parametrize("text, expected", [
    ("`Jet/Jet.PT` > 50 && abs(`Jet/Jet.Eta`) < 2", (N["Jet/Jet.PT"] > 50) & (np.abs(N["Jet/Jet.Eta"]) < 2)),
    ("get('Jet/Jet.PT') * 2 > 100", N["Jet/Jet.PT"] * 2 > 100),
    ('get("Jet/Jet.PT") / 2 > `Jet/Jet.Tau[5]`', N["Jet/Jet.PT"] / 2 > N["Jet/Jet.Tau[5]"]),
    ("!(`HLT_e5-etcut!` == 1) | AnalysisJetsAuxDyn.pt > 1e5",
     ~(N["HLT_e5-etcut!"] == 1) | (N["AnalysisJetsAuxDyn.pt"] > 1e5)),
])
def test_quoted_and_dotted_branch_names(text, expected):
    np.testing.assert_array_equal(Expression(text).evaluate(N), expected)


def test_quoted_names_are_the_symbols_once_each():
    expression = Expression("`Jet/Jet.PT` > 1 & get('Jet/Jet.PT') < 9 & AnalysisJetsAuxDyn.pt > `Jet/Jet.Eta`")
    assert expression.symbols == ["Jet/Jet.PT", "AnalysisJetsAuxDyn.pt", "Jet/Jet.Eta"]


def test_an_unquoted_path_is_never_a_silent_division():
    """uproot reads `Jet/Jet.PT * 2` as Jet / Jet.PT * 2; here it is refused, naming the quoting."""
    with pytest.raises(ConfigError, match=r"would read as Jet divided by Jet.PT; quote .* \(`Jet/Jet.PT`\)"):
        Expression("Jet/Jet.PT * 2", "input.selection")
    assert Expression("jet_pt / jet_eta > 0").symbols == ["jet_pt", "jet_eta"]  # a division, with spaces
    assert Expression("jet_m/jet_pt < 0.5").symbols == ["jet_m", "jet_pt"]  # and without, between plain names
    with pytest.raises(ConfigError, match=r"would read as AK4CHS divided by AK4CHS.pt"):
        Expression("AK4CHS/AK4CHS.pt > 30", "input.selection")


def test_an_unclosed_backtick_is_an_error():
    with pytest.raises(ConfigError, match="backtick is not closed"):
        Expression("`Jet/Jet.PT > 1")
