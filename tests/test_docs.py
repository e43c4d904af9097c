"""The docs and the code stay in step: every config key is in the config reference, every module is on the map."""
import dataclasses
import typing
from pathlib import Path

from root2hdf5.pipelines.config.schema import Config

REPO = Path(__file__).resolve().parents[1]


def field_paths(cls, prefix: str = "", seen=None) -> list[str]:
    """Dotted paths of the schema's keys, `[]` marking list items (samples[].categories[].label ...): every
    key that holds a value, and the keys of each block once (a map's keys under variations[].size, not again
    under size.eta)."""
    seen = set() if seen is None else seen
    paths = []
    for f in dataclasses.fields(cls):
        path = f"{prefix}{f.name}"
        tp = typing.get_type_hints(cls)[f.name]
        blocks = _dataclasses_in(tp)
        if not blocks or typing.get_args(tp) and any(not dataclasses.is_dataclass(a) and a is not type(None)
                                                     for a in _flat_args(tp)):
            paths.append(path)  # a value (possibly also written as a block, e.g. a number or a map)
        for inner in blocks:
            if inner in seen:
                continue
            seen.add(inner)
            item = "[]" if _is_list_of(tp, inner) else ""
            paths += field_paths(inner, f"{path}{item}.", seen)
    return paths


def _flat_args(tp) -> list:
    args = typing.get_args(tp)
    return [a for arg in args for a in (_flat_args(arg) if typing.get_args(arg) else [arg])]


def _dataclasses_in(tp) -> list:
    if dataclasses.is_dataclass(tp):
        return [tp]
    return [c for arg in typing.get_args(tp) for c in _dataclasses_in(arg)]


def _is_list_of(tp, inner) -> bool:
    if typing.get_origin(tp) is list:
        return inner in _dataclasses_in(typing.get_args(tp)[0])
    return any(_is_list_of(arg, inner) for arg in typing.get_args(tp))


def test_every_config_key_is_in_the_reference():
    reference = (REPO / "docs" / "config.md").read_text()
    missing = [p for p in field_paths(Config) if f"`{p}`" not in reference]
    assert not missing, f"docs/config.md does not document {missing}"


def test_every_module_is_on_the_map():
    tree = (REPO / "docs" / "architecture.md").read_text()
    modules = sorted(str(p.relative_to(REPO / folder)) for folder in ("pipelines", "transforms")
                     for p in (REPO / folder).rglob("*.py") if p.name != "__init__.py")
    missing = [m for m in modules if f"  {m} " not in tree]
    assert not missing, f"docs/architecture.md does not list {missing}"


def test_readme_links_every_doc():
    readme = (REPO / "README.md").read_text()
    missing = [p.name for p in (REPO / "docs").glob("*.md") if f"docs/{p.name}" not in readme]
    assert not missing, f"README.md does not link {missing}"


# what each stage of transforms/ may import besides itself and core (docs/architecture.md says why)
STAGE_IMPORTS = {"core": set(), "rows": set(), "physics": set(), "stats": set(), "read": {"rows"},
                 "output": {"stats"}}


def _imports(path: Path) -> set[str]:
    import ast

    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {n for n in names if n.startswith("root2hdf5")}


def test_imports_run_one_way():
    """transforms never imports pipelines; its stages import only what docs/architecture.md says."""
    wrong = []
    for stage, allowed in STAGE_IMPORTS.items():
        for path in (REPO / "transforms" / stage).rglob("*.py"):
            for name in _imports(path):
                parts = name.split(".")
                target = parts[2] if len(parts) > 2 and parts[1] == "transforms" else parts[1]
                if parts[1] != "transforms" or target not in {stage, "core", *allowed}:
                    wrong.append(f"{path.relative_to(REPO)} imports {name}")
    assert not wrong, wrong
