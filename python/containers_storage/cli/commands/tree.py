"""``layers --tree``: layers drawn as a tree, as Go's ``tree.go`` draws them."""

from __future__ import annotations

import sys
from typing import NamedTuple

__all__ = ["TreeNode", "print_tree"]

_INDENT = 2
_STEM_WIDTH = _INDENT - 1
_VERTICAL = "\u2502"
_THIS_AND_MORE = "\u251c"
_JUST_THIS = "\u2514"
_STEM = "\u2500"


class TreeNode(NamedTuple):
    """An edge ``left`` (parent, or ``(base)``) to ``right`` (the layer), with notes."""

    left: str
    right: str
    notes: list[str]


def _select_root(nodes: list[TreeNode]) -> str:
    children: dict[str, list[str]] = {}
    are_children = {n.right for n in nodes}
    for n in nodes:
        children.setdefault(n.left, []).append(n.right)
    favorite = ""
    for left, right in children.items():
        if left in are_children:
            continue
        if favorite == "" or len(right) < len(children[favorite]):
            favorite = left
    return favorite


def _print_subtree(
    root: str, nodes: list[TreeNode], indent: int, continued: list[int]
) -> list[TreeNode]:
    leftovers = [n for n in nodes if n.left != root]
    children = [n for n in nodes if n.left == root]
    write = sys.stdout.write
    for i, child in enumerate(children):
        prefix = [" "] * indent
        for column in continued:
            prefix[column] = _VERTICAL
        istring = "".join(prefix)
        sub = list(continued)
        header, note_header = _JUST_THIS, " "
        if i < len(children) - 1:
            sub.append(indent)
            header, note_header = _THIS_AND_MORE, _VERTICAL
        write(f"{istring}{header}{_STEM * _STEM_WIDTH}{child.right}\n")
        for note in child.notes:
            write(f"{istring}{note_header}{' ' * _STEM_WIDTH}{note}\n")
        leftovers = _print_subtree(child.right, leftovers, indent + _INDENT, sub)
    return leftovers


def print_tree(nodes: list[TreeNode]) -> None:
    """Print every tree the edges form, each under its root."""
    while nodes:
        root = _select_root(nodes)
        sys.stdout.write(f"{root}\n")
        before = len(nodes)
        nodes = _print_subtree(root, nodes, 0, [])
        if len(nodes) == before:
            break
