"""How the frontend names Python constructs and values in messages to users."""

from __future__ import annotations


def describe_node(node) -> str:
    """A Python syntax node as a user would call it: 'with', a dict literal, ..."""
    names = {"Lambda": "lambda", "With": "'with'", "Try": "'try'", "Raise": "'raise'", "Global": "'global'",
             "Nonlocal": "'nonlocal'", "Delete": "'del'", "FunctionDef": "a nested function definition",
             "ClassDef": "a class definition", "Import": "'import'", "ImportFrom": "'import'",
             "Dict": "a dict literal", "Set": "a set literal", "DictComp": "a dict comprehension",
             "SetComp": "a set comprehension", "GeneratorExp": "a generator expression", "Await": "'await'",
             "Yield": "'yield'", "YieldFrom": "'yield from'", "Starred": "'*' unpacking",
             "AsyncFor": "'async for'", "AsyncWith": "'async with'", "Match": "'match'", "Attribute": "an attribute",
             "TryStar": "'try'"}
    return names.get(type(node).__name__, f"'{type(node).__name__}'")

