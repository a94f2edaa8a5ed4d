"""Glued values are raw numbers; the prose formats them (static checks, nothing is executed).

``python -m ddgan_core sweep`` reads every value a chapter glues (``myst_nb.glue``) into a CSV,
so a number must be glued as a plain ``int`` or ``float`` and formatted where the reader sees
it, with myst-nb's format spec: ``{glue:text}`pixel_mean:.4f```. These tests parse the code
cells of every ``notebooks/0*.py`` (via ``jupytext.read`` and :mod:`ast`) and check that

- no ``glue(name, value)`` builds its value as text from a number (an f-string with a
  replacement field, ``format(...)``, ``str(...)``, ``repr(...)``, ``"...".format(...)``,
  ``"..." % ...``, ``map(str, ...)``, or a numeric string literal), except the names in
  :data:`TEXT_GLUES`, which are genuinely text;
- every glue role and ``glue:figure`` directive in the markdown refers to a glued name;
- every format spec in a ``{glue:text}`` role is valid and fits the glued value: ``d`` (and the
  other integer types) only for values glued as ``int(...)``/``len(...)``, the float types
  (``f e g %`` ...) only for values glued as ``int``/``float``, never for text.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import jupytext
import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted((ROOT / "notebooks").glob("0*.py"))

# Glue names (``*`` stands for an f-string field of the name) whose value is text built from
# numbers on purpose, each with the reason it stays text.
TEXT_GLUES = {
    "ddpm_model_file": "a file path, shown to the reader for the sample command",
    "fast_threads": "the timing run's thread count with 'thread' or 'threads' after it; the count "
                    "itself is in the timing entry's metrics",
    "vp_betas": "a list of the VP schedule's betas, joined by commas for the prose",
    "ddpm_channels": "the UNet's channel widths as one 'a/b/c' label",
    "fid_*_*_text": "the prose's FID at K = 10/100/1000, or a sentence saying that K is not in "
                    "this profile's grid (smoke has K = 1, 2, 5 only); the number itself is "
                    "glued as fid_<sampler>_<K> wherever it exists",
    "ddim_better_ks": "a list of step counts joined by commas, or 'none'",
    "anc_better_ks": "a list of step counts joined by commas, or 'none'",
    "g_channels": "the generator's channel widths as one 'a / b / c' label",
    "unet_channels": "the UNet's channel widths as one 'a / b / c' label",
    "width_text": "'at the same network width', or the two width lists where an override made "
                  "them differ",
    "extractors_agree": "a sentence naming the pairs of models the two extractors rank "
                        "differently, or saying they agree",
    "quality_verdict": "a sentence whose wording depends on whether the FID intervals of DDGAN "
                       "and DDPM-100 overlap, and on whether the profile has a DDPM-100 row; "
                       "the numbers themselves are glued as gan_fid and ddpm100_fid",
    "reference_note": "a sentence naming the device of chapter 3's DDPM, worded by whether the "
                      "profile adds its rows to the comparison",
    "trend_note": "a sentence that appears only when DDGAN's FID fell at every progress "
                  "point, quoting the first and last values and the discriminator's state",
    "fr_ancestral": "the ancestral step counts of the frontier joined by 'and', or a phrase "
                    "saying the profile has none",
    "chain_intro": "a sentence saying whether the comparison table has DDPM's full chain, "
                   "with its step count",
    "full_chain_text": "a sentence quoting DDPM's full chain against 100 steps and DDGAN, with "
                       "intervals and sampling minutes, worded by whether the intervals "
                       "overlap; or saying the profile has no full chain",
    "matched_text": "a sentence naming the DDPM sampler that matches DDGAN's FID, or saying "
                    "that none does",
    "matched_ratio_text": "the matched-quality speed-up, or a phrase saying it is not defined "
                          "when no DDPM sampler reaches DDGAN's FID",
    "centre_channels": "the generator's channel widths as one 'a/b/c' label",
    "width_values": "the swept widths as multiples of the UNet's, joined by 'and'",
    "fr_budget": "the pair's training budget as 'N minutes', or a phrase saying the profile "
                 "trains for step counts instead (budget_minutes = 0)",
    "fr_budget_note": "a clause comparing the distillation's calibrated budget with the time "
                      "it took, worded by whether it stayed within the budget",
    "fr_rounds": "the students' step counts joined by commas",
    "ch4_sentence": "a sentence quoting chapter 4's run of the same recipe, or saying that it is "
                    "not in the cache (an override of a ddgan_ key); its numbers are glued in "
                    "chapter 4",
}

INT_TYPES = set("bcdoxX")
FLOAT_TYPES = set("eEfFgGn%")
ROLE = re.compile(r"\{glue(?::(?P<kind>[a-z]*))?\}`(?P<body>[^`]+)`")
FIGURE = re.compile(r"```\{glue:figure\}\s+(?P<key>\S+)")


@dataclass
class Glue:
    notebook: str
    name: str  # the name, or a pattern with ``*`` for each f-string field
    value: ast.expr
    kind: str  # "int", "float", "text" or "other"
    why_text: list[str]  # how the value turns numbers into text (empty: it does not)

    @property
    def regex(self) -> re.Pattern:
        return re.compile("[A-Za-z0-9]+".join(map(re.escape, self.name.split("*"))) + r"\Z")


def _name_pattern(node: ast.expr) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(part.value if isinstance(part, ast.Constant) else "*"
                       for part in node.values)
    return None


NUMBER_CALLS = {"int", "float", "len", "round", "bool"}


def _walk_text(node: ast.AST):
    """The nodes of ``node`` whose value can end up in the glued value: not the insides of a
    call that returns a number (``float(...)``) nor a subscript's key (``speed[f"ddpm_{k}"]``)."""
    yield node
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id in NUMBER_CALLS):
        return
    for field, child in ast.iter_fields(node):
        if isinstance(node, ast.Subscript) and field == "slice":
            continue
        for sub in child if isinstance(child, list) else [child]:
            if isinstance(sub, ast.AST):
                yield from _walk_text(sub)


def _text_from_numbers(node: ast.expr, assignments: dict[str, list[ast.expr]],
                       seen: frozenset[str] = frozenset()) -> list[str]:
    """How ``node`` formats something as text (empty when it does not)."""
    found = []
    for sub in _walk_text(node):
        if isinstance(sub, ast.JoinedStr) and any(
                isinstance(v, ast.FormattedValue) for v in sub.values):
            found.append(f"f-string {ast.unparse(sub)}")
        elif isinstance(sub, ast.Call):
            func = sub.func
            if isinstance(func, ast.Name) and func.id in ("format", "str", "repr"):
                found.append(f"{func.id}() call {ast.unparse(sub)}")
            elif isinstance(func, ast.Attribute) and func.attr == "format":
                found.append(f".format() call {ast.unparse(sub)}")
            elif isinstance(func, ast.Name) and func.id == "map" and any(
                    isinstance(a, ast.Name) and a.id in ("str", "repr") for a in sub.args):
                found.append(f"map(str, ...) {ast.unparse(sub)}")
        elif (isinstance(sub, ast.BinOp) and isinstance(sub.op, ast.Mod)
              and isinstance(sub.left, ast.Constant) and isinstance(sub.left.value, str)):
            found.append(f"%-formatting {ast.unparse(sub)}")
        elif isinstance(sub, ast.Constant) and isinstance(sub.value, str):
            try:
                float(sub.value.replace(",", ""))
            except ValueError:
                pass
            else:
                found.append(f"numeric string literal {sub.value!r}")
        elif (isinstance(sub, ast.Name) and sub is node and sub.id in assignments
              and sub.id not in seen):
            # a variable is glued: look at every value it is assigned in the notebook
            for value in assignments[sub.id]:
                found += _text_from_numbers(value, assignments, seen | {sub.id})
    return found


def _kind(node: ast.expr) -> str:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        if node.func.id in ("int", "len"):
            return "int"
        if node.func.id == "float":
            return "float"
    if isinstance(node, ast.Constant):
        return {int: "int", float: "float", str: "text"}.get(type(node.value), "other")
    if isinstance(node, ast.JoinedStr):
        return "text"
    if isinstance(node, ast.IfExp):
        kinds = {_kind(node.body), _kind(node.orelse)}
        return kinds.pop() if len(kinds) == 1 else "other"
    return "other"


def _glues(source: Path) -> list[Glue]:
    notebook = jupytext.read(source)
    trees = [ast.parse(cell.source) for cell in notebook.cells if cell.cell_type == "code"]
    assignments: dict[str, list[ast.expr]] = {}
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        assignments.setdefault(target.id, []).append(node.value)
    glues = []
    for tree in trees:
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name | ast.Attribute)
                    and getattr(node.func, "id", getattr(node.func, "attr", None)) == "glue"):
                continue
            arguments = dict(zip(("name", "variable"), node.args))
            arguments.update({k.arg: k.value for k in node.keywords if k.arg})
            name = _name_pattern(arguments["name"])
            assert name is not None, (
                f"{source.name}: glue name {ast.unparse(arguments['name'])} is not a string")
            value = arguments["variable"]
            glues.append(Glue(source.stem, name, value, _kind(value),
                              _text_from_numbers(value, assignments)))
    return glues


def _markdown(source: Path) -> str:
    return "\n".join(c.source for c in jupytext.read(source).cells if c.cell_type == "markdown")


def _roles(source: Path) -> list[tuple[str, str, str | None]]:
    """(role kind, key, format spec or None) of every glue role and figure in the markdown."""
    text = _markdown(source)
    roles = []
    for match in ROLE.finditer(text):
        kind, body = match["kind"] or "any", match["body"]
        key, spec = body.rsplit(":", 1) if ":" in body else (body, None)
        roles.append((kind, key, spec))
    roles += [("figure", m["key"], None) for m in FIGURE.finditer(text)]
    return roles


ALL_GLUES = {source.stem: _glues(source) for source in SOURCES}


def _glued(notebook: str, key: str) -> list[Glue]:
    return [g for g in ALL_GLUES[notebook] if g.regex.match(key)]


def test_the_chapters_glue_something():
    assert SOURCES, "no notebooks/0*.py found"
    for source in SOURCES:
        assert ALL_GLUES[source.stem], f"{source.name} glues nothing"
        assert _roles(source), f"{source.name} has no glue roles"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_numbers_are_glued_raw_not_as_formatted_text(source):
    bad = [
        f"{g.name}: " + "; ".join(g.why_text)
        for g in ALL_GLUES[source.stem] if g.why_text and g.name not in TEXT_GLUES
    ]
    assert not bad, (
        f"{source.name} glues numbers as formatted text (glue the int/float and format it in "
        "the prose, {glue:text}`name:.4f`, or add the name to TEXT_GLUES with a reason):\n"
        + "\n".join(bad))


def test_every_text_glue_exception_is_used_and_explained():
    flagged = {g.name for glues in ALL_GLUES.values() for g in glues if g.why_text}
    stale = sorted(set(TEXT_GLUES) - flagged)
    assert not stale, f"TEXT_GLUES entries that no notebook needs any more: {stale}"
    assert all(len(reason) > 20 for reason in TEXT_GLUES.values())


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_every_glue_role_refers_to_a_glued_name(source):
    missing = [f"{{glue:{kind}}}`{key}`" for kind, key, _ in _roles(source)
               if not _glued(source.stem, key)]
    assert not missing, f"{source.name}: glue roles without a glue(...) of that name: {missing}"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_format_specs_are_valid_and_fit_the_glued_value(source):
    problems = []
    for kind, key, spec in _roles(source):
        if kind != "text" or spec is None:
            continue
        sample = 1234 if spec[-1] in INT_TYPES else 1234.5678
        try:
            format(sample, spec)
        except ValueError as err:
            problems.append(f"{key}:{spec}: invalid format spec ({err})")
            continue
        for glue in _glued(source.stem, key):
            if spec[-1] in INT_TYPES and glue.kind != "int":
                problems.append(f"{key}:{spec}: an integer spec needs a value glued as int(...) "
                                f"(glued as {ast.unparse(glue.value)})")
            elif spec[-1] in FLOAT_TYPES and glue.kind not in ("int", "float"):
                problems.append(f"{key}:{spec}: a float spec needs a value glued as "
                                f"float(...) or int(...) (glued as {ast.unparse(glue.value)})")
            elif spec[-1] not in INT_TYPES | FLOAT_TYPES and glue.kind != "text":
                problems.append(f"{key}:{spec}: no numeric type at the end of the spec")
    assert not problems, f"{source.name}:\n" + "\n".join(problems)
