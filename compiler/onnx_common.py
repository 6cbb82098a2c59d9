"""Helpers every front-end module shares (imports nothing else of the front end)."""

__all__ = ["attrs", "label"]


def attrs(node):
    """A NodeProto's attributes as ``{name: python value}``."""
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def label(node):
    """How messages name ``node``: its name, else its op type."""
    return node.name or node.op_type
