"""Reading YAML safely: ``yaml.safe_load`` minus recursive aliases and alias bombs.

PyYAML resolves an alias (``*name``) to the same object as its anchor, so loading a
"billion laughs" document is quick; it is everything after (interpolating, validating,
printing) that walks the expanded tree and never ends.  A recursive alias gives a list
that contains itself.  Both are refused here, before anything is built.
"""

from __future__ import annotations

from typing import Any

from ._exceptions import LLMConfigError

__all__ = ["MAX_YAML_NODES", "load_yaml"]

# A configuration is a few dozen nodes; aliases may repeat a part, but a document whose
# aliases expand to more than this ("billion laughs": 9 aliases of 9 aliases of ...)
# would take unbounded memory and time to interpolate and validate.
MAX_YAML_NODES = 10_000


def load_yaml(text: str, what: str) -> Any:
    """``yaml.safe_load(text)``, refusing recursive aliases and alias bombs."""
    import yaml  # PyYAML costs ~15 ms to import: only when a file is read.

    loader = yaml.SafeLoader(text)
    loader.name = what  # PyYAML's messages say where: "in <what>, line 2, column 1"
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _count_nodes(node, set(), {}, what)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise LLMConfigError(f"{what} is not valid YAML: {exc}") from None
    except RecursionError:
        raise LLMConfigError(f"{what} is nested too deeply: a configuration needs a few levels") from None
    finally:
        loader.dispose()


def _count_nodes(node: Any, open_nodes: set[int], sizes: dict[int, int], what: str) -> int:
    """How many nodes ``node`` stands for once every alias is expanded (memoised per node:
    linear in the document, however much its aliases would expand)."""
    import yaml

    if id(node) in sizes:
        return sizes[id(node)]
    if id(node) in open_nodes:
        raise LLMConfigError(f"{what} has a recursive YAML alias (an anchor used inside "
                             f"itself, line {node.start_mark.line + 1}): write the value out instead")
    children: list[Any] = []
    if isinstance(node, yaml.SequenceNode):
        children = node.value
    elif isinstance(node, yaml.MappingNode):
        children = [part for pair in node.value for part in pair]
    open_nodes.add(id(node))
    size = 1 + sum(_count_nodes(child, open_nodes, sizes, what) for child in children)
    open_nodes.discard(id(node))
    if size > MAX_YAML_NODES:
        raise LLMConfigError(
            f"{what} expands to more than {MAX_YAML_NODES} YAML nodes through its aliases "
            "(*name): a configuration is far smaller; write it without nested aliases")
    sizes[id(node)] = size
    return size
