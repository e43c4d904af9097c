"""Jet-level expressions such as `input.selection`: uproot's expression language with ROOT's logic.

The language is the one uproot uses for `cut=` and aliases: Python syntax over branch names, with uproot's
function table (`abs`, `sqrt`, `where`, `isfinite`, ...). Two things are adjusted so that cuts written the
way physicists write them in `TTree::Draw` mean what they look like:

* `&`, `|`, `^` (and `&&`, `||`, `and`, `or`) bind more loosely than comparisons, as in C/ROOT, so
  `jet_pt > 350e3 & abs(jet_eta) < 2` is `(jet_pt > 350e3) & (abs(jet_eta) < 2)`. In plain Python it would
  be `jet_pt > (350e3 & abs(jet_eta)) < 2`, an error. Bit tests need parentheses: `(flags & 4) != 0`.
* `!x` and `not x` are element-wise negation; chained comparisons `0 < x < 2` are element-wise too.

Branch names that are not Python names (`AnalysisJetsAuxDyn.pt`, `Jet/Jet.PT`, `Jet/Jet.Tau[5]`,
`HLT_e5-etcut`) are written in backticks, as pandas quotes column names: `` `Jet/Jet.PT` > 50 ``; uproot's own
`get("Jet/Jet.PT")` means the same. A dotted name may also stand unquoted (`AnalysisJetsAuxDyn.pt > 20e3`):
attributes are not part of the language, so `a.b` can only name the branch "a.b". A `/` written without
spaces before a dotted name (`Jet/Jet.PT`) is refused: it would read as a division by uproot and as a path
by the user; quote the name, or put spaces around a division (`jet_m/jet_pt` is a division).

Nothing but this grammar is evaluated: no attributes, subscripts, lambdas or builtins, so a config string
cannot run arbitrary code. Nor can it hang or crash the run: the constant parts (`10**10**10`, `1/0`) are
computed when the config loads, with `**` exponents limited to 1024 and results to finite numbers, and an
expression nested too deeply for Python's parser is refused there too.
"""
from __future__ import annotations

import ast
import difflib
import io
import math
import re
import threading
import tokenize
from typing import Mapping

import numpy as np
from uproot.language.python import PythonLanguage

from root2hdf5.transforms.core.errors import ConfigError

FUNCTIONS = dict(PythonLanguage.default_functions)
FUNCTIONS.update(
    logical_not=np.logical_not,
    logical_xor=np.logical_xor,
    bitwise_and=np.bitwise_and,
    bitwise_or=np.bitwise_or,
    minimum=np.minimum,
    maximum=np.maximum,
)

_LOGICAL_OPS = {"&": "&", "|": "|", "^": "^", "and": "&", "or": "|"}
_OPEN, _CLOSE = "([{", ")]}"
_ALLOWED_NODES = (
    ast.Expression, ast.BinOp, ast.UnaryOp, ast.Compare, ast.Call, ast.Name, ast.Load, ast.Constant,
    ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.BitAnd, ast.BitOr, ast.BitXor,
    ast.Invert, ast.USub, ast.UAdd, ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE,
)


# the largest |exponent| of `**` with a constant exponent, and the largest index of a list element (Jet_pt[k]):
# beyond them a result is no number a float holds (10**10**10 would take hours to compute as an integer)
MAX_EXPONENT = 1024
MAX_INDEX = 2**31 - 1
_FOLD = {
    ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b, ast.FloorDiv: lambda a, b: a // b, ast.Mod: lambda a, b: a % b,
    ast.Pow: lambda a, b: a ** b, ast.BitAnd: lambda a, b: a & b, ast.BitOr: lambda a, b: a | b,
    ast.BitXor: lambda a, b: a ^ b,
    ast.USub: lambda a: -a, ast.UAdd: lambda a: +a, ast.Invert: lambda a: ~a,
}

# `name` (pandas' quoting) or get("name") / get('name') (uproot's): any branch name, whatever its characters
_QUOTED = re.compile(r"`([^`]*)`|\bget\(\s*(?:'([^']*)'|\"([^\"]*)\")\s*\)")
# an unquoted `/` between a name and a dotted name, no spaces: Jet/Jet.PT, AK4CHS/AK4CHS.pt are the paths of
# Delphes and Bacon branches, not divisions (jet_m/jet_pt stays a division)
_SLASH_PATH = re.compile(r"(?<![\w.])([A-Za-z_][\w.]*)/([A-Za-z_]\w*(?:\.\w+)+(?:\[\d+\])*)")


def placeholder(index: int) -> str:
    """The identifier standing for the index-th quoted name while the text is parsed."""
    return f"__q{index}__"


def protect_names(text: str, what: str = "expression") -> tuple[str, dict[str, str]]:
    """The text with every quoted branch name replaced by a placeholder identifier, and placeholder -> name.

    Done before anything else reads the text, so that `!`, `&&`, `/` or `[5]` inside a name stay part of it."""
    names: dict[str, str] = {}
    index: dict[str, str] = {}

    def replace(match):
        name = next(g for g in match.groups() if g is not None)
        if not name.strip():
            raise ConfigError(f"{what} {text!r}: an empty quoted branch name")
        if name not in index:
            index[name] = placeholder(len(index))
            names[index[name]] = name
        return f" {index[name]} "

    rewritten = _QUOTED.sub(replace, text)
    if "`" in rewritten:
        raise ConfigError(f"{what} {text!r}: a backtick is not closed; quote a branch name as `name`")
    path = _SLASH_PATH.search(rewritten)
    if path:
        raise ConfigError(
            f"{what} {text!r}: {path.group(0)!r} would read as {path.group(1)} divided by {path.group(2)}; "
            f"quote a branch name holding '/' in backticks (`{path.group(0)}`), or write a division with "
            f"spaces ({path.group(1)} / {path.group(2)})")
    return rewritten, names


def shown(text: str) -> str:
    """An expression as quoted in a message: whole unless it is very long."""
    return repr(text if len(text) <= 200 else text[:200] + "...")


def check_index(index: str, what: str, text: str) -> int:
    """The index of `branch[index]` as an int, refused beyond any list's length (numpy overflows there)."""
    value = int(index)
    if value > MAX_INDEX:
        raise ConfigError(f"{what} {shown(text)}: index {index} is larger than any list can be (at most {MAX_INDEX})")
    return value


def _constant(node, what: str, text: str):
    """The value of a constant sub-expression (None where a branch is read), computed with its size bounded
    so that `10**10**10` or `1/0` fail here, at config load, and not as a hang or a crash on a worker."""
    if isinstance(node, ast.Constant):
        value = node.value
    elif isinstance(node, ast.UnaryOp) and type(node.op) in _FOLD:
        operand = _constant(node.operand, what, text)
        value = None if operand is None else _FOLD[type(node.op)](operand)
    elif isinstance(node, ast.BinOp) and type(node.op) in _FOLD:
        left, right = _constant(node.left, what, text), _constant(node.right, what, text)
        if isinstance(node.op, ast.Pow) and right is not None and not abs(right) <= MAX_EXPONENT:
            raise ConfigError(f"{what} {shown(text)}: the exponent {ast.unparse(node.right)} of ** is larger than "
                              f"{MAX_EXPONENT}; no float holds the result")
        if left is None or right is None:
            return None
        try:
            value = _FOLD[type(node.op)](left, right)
        except ZeroDivisionError:
            raise ConfigError(f"{what} {shown(text)}: {ast.unparse(node)} divides by zero") from None
        except OverflowError:
            value = math.inf
    else:
        for child in ast.iter_child_nodes(node):
            _constant(child, what, text)
        return None
    if isinstance(value, int) and value.bit_length() > MAX_EXPONENT:
        raise ConfigError(f"{what} {shown(text)}: {shown(ast.unparse(node))} is larger than a float holds")
    if isinstance(value, complex) or not math.isfinite(value):
        if isinstance(node, ast.Constant):  # 1e999: Python reads it as inf
            raise ConfigError(f"{what} {shown(text)}: a number in it is larger than a float holds (1.8e308)")
        raise ConfigError(f"{what} {shown(text)}: {ast.unparse(node)} is not a finite real number")
    return value


def unquote(name: str) -> str:
    """A branch name as given in a config key that takes one name (weights.branch ...): `name` or
    get("name") quoting, as in expressions, is removed."""
    match = _QUOTED.fullmatch(name.strip())
    return next(g for g in match.groups() if g is not None) if match else name


def _dotted(node) -> str | None:
    """`a.b.c` (Attribute on Attribute on Name) -> "a.b.c"; None for anything else."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return ".".join([node.id, *reversed(parts)])


class _DottedNames(ast.NodeTransformer):
    """`AnalysisJetsAuxDyn.pt` -> one Name: attributes are not in the language, so a dotted chain of names
    can only be a branch name with dots. No attribute is ever looked up."""

    def __init__(self, names: dict[str, str]):
        self.names = names
        self.by_name = {v: k for k, v in names.items()}

    def visit_Attribute(self, node):
        dotted = _dotted(node)
        if dotted is None:
            return self.generic_visit(node)  # an attribute of a call or a constant: refused later
        if dotted not in self.by_name:
            self.by_name[dotted] = placeholder(len(self.names))
            self.names[self.by_name[dotted]] = dotted
        return ast.copy_location(ast.Name(self.by_name[dotted], ast.Load()), node)


def _root_precedence(text: str) -> str:
    """Parenthesize the operands of logical operators at every bracket depth (C/ROOT precedence)."""
    text = text.replace("&&", " & ").replace("||", " | ")
    text = re.sub(r"!(?!=)", " not ", text)
    tokens = [
        (tok.type, tok.string)
        for tok in tokenize.generate_tokens(io.StringIO(text).readline)
        if tok.type not in (tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER, tokenize.INDENT,
                            tokenize.DEDENT, tokenize.COMMENT)
    ]
    out: list[tuple[int, str]] = []
    frames = [[0, False]]  # per bracket depth: where the current operand starts, whether it was split

    def close_operand(frame):
        if frame[1]:
            out.insert(frame[0], (tokenize.OP, "("))
            out.append((tokenize.OP, ")"))

    for kind, string in tokens:
        if string in _OPEN:
            out.append((kind, string))
            frames.append([len(out), False])
        elif string in _CLOSE or string == ",":
            frame = frames[-1]
            close_operand(frame)
            out.append((kind, string))
            if string == ",":
                frame[:] = [len(out), False]
            elif len(frames) > 1:
                frames.pop()
        elif string in _LOGICAL_OPS and kind in (tokenize.OP, tokenize.NAME):
            frame = frames[-1]
            out.insert(frame[0], (tokenize.OP, "("))
            out.append((tokenize.OP, ")"))
            out.append((tokenize.OP, _LOGICAL_OPS[string]))
            frame[:] = [len(out), True]
        else:
            out.append((kind, string))
    close_operand(frames[0])
    return tokenize.untokenize(out)


class _ElementWise(ast.NodeTransformer):
    """`not x` -> logical_not(x); `a < b < c` -> (a < b) & (b < c)."""

    def visit_UnaryOp(self, node):
        self.generic_visit(node)
        if isinstance(node.op, ast.Not):
            return ast.Call(ast.Name("logical_not", ast.Load()), [node.operand], [])
        return node

    def visit_Compare(self, node):
        self.generic_visit(node)
        if len(node.ops) == 1:
            return node
        operands = [node.left, *node.comparators]
        pairs = [ast.Compare(operands[i], [op], [operands[i + 1]]) for i, op in enumerate(node.ops)]
        result = pairs[0]
        for pair in pairs[1:]:
            result = ast.BinOp(result, ast.BitAnd(), pair)
        return result


# CPython 3.11's ast conversion is not safe when threads parse at once ("AST constructor recursion depth
# mismatch"); DoFns parse their expressions in setup, which the multi-threaded DirectRunner runs in parallel.
_AST_LOCK = threading.Lock()


class Expression:
    """A compiled jet-level expression. `symbols` are the branch names it reads, as the tree names them."""

    def __init__(self, text: str, what: str = "expression", functions: Mapping[str, object] | None = None):
        self.text = text
        self.what = what
        # the callable names: uproot's table, or a caller's extension of it (per-event reductions)
        self.functions = FUNCTIONS if functions is None else functions
        rewritten, self._names = protect_names(text, what)  # placeholder identifier -> branch name
        try:
            self._compile(rewritten)
        except (RecursionError, MemoryError):  # Python's parser and compiler recurse once per nesting level
            raise ConfigError(f"{what} {shown(text)} is nested too deeply; split it, or use fewer "
                              "parentheses and operators in a row") from None

    def _compile(self, rewritten: str) -> None:
        text, what = self.text, self.what
        try:
            with _AST_LOCK:
                tree = ast.parse(_root_precedence(rewritten).strip(), mode="eval")
        except (SyntaxError, tokenize.TokenError) as err:
            reason = getattr(err, "msg", None) or str(err)
            raise ConfigError(f"{what} {text!r} is not a valid expression: {reason}") from None
        tree = ast.fix_missing_locations(_ElementWise().visit(_DottedNames(self._names).visit(tree)))
        symbols: dict[str, int] = {}
        for node in ast.walk(tree):
            if not isinstance(node, _ALLOWED_NODES):
                raise ConfigError(
                    f"{what} {text!r} uses {type(node).__name__}, which the expression language does not "
                    "allow (branch names, numbers, arithmetic, comparisons, & | ~ and function calls only)")
            if isinstance(node, ast.Call):
                if not isinstance(node.func, ast.Name) or node.func.id not in self.functions:
                    name = getattr(node.func, "id", ast.unparse(node.func))
                    close = difflib.get_close_matches(name, self.functions, n=1)
                    hint = f"; did you mean {close[0]!r}?" if close else ""
                    raise ConfigError(f"{what} {text!r} calls unknown function {name!r}{hint}")
                if node.keywords:
                    raise ConfigError(f"{what} {text!r}: keyword arguments are not supported")
            elif isinstance(node, ast.Name) and node.id not in self.functions:
                symbols[node.id] = min(node.col_offset, symbols.get(node.id, node.col_offset))
            elif isinstance(node, ast.Constant) and not isinstance(node.value, (int, float, bool)):
                raise ConfigError(f"{what} {text!r}: only numeric constants are allowed, got {node.value!r}")
        _constant(tree.body, what, text)
        # identifiers as they appear in the compiled code; symbols as the tree names the branches
        self._identifiers = sorted(symbols, key=symbols.get)
        self.symbols = list(dict.fromkeys(self._names.get(s, s) for s in self._identifiers))
        with _AST_LOCK:
            self._code = compile(tree, f"<{what}>", "eval")

    def evaluate(self, values: Mapping[str, object]):
        """Evaluate over arrays named by branch; broadcasting and ufuncs follow numpy/awkward."""
        namespace = dict(self.functions)
        namespace.update((name, values[self._names.get(name, name)]) for name in self._identifiers)
        with np.errstate(all="ignore"):
            return eval(self._code, {"__builtins__": {}}, namespace)  # noqa: S307 - whitelisted AST only

    def __repr__(self):
        return f"Expression({self.text!r})"
