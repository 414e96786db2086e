"""The user-flow graph a visitor walks, with the original prototype's probabilities.

LOGIN → HOME → VIEW_PRODUCT → CART → CHECKOUT → EXIT, with the ways back to HOME and out.
A walk always starts at LOGIN and ends at EXIT; the store model decides what each step does.
"""

from __future__ import annotations

import random

LOGIN = "LOGIN"
HOME = "HOME"
VIEW_PRODUCT = "VIEW_PRODUCT"
CART = "CART"
CHECKOUT = "CHECKOUT"
EXIT = "EXIT"

# node -> ((next node, probability), ...); each row sums to 1.
GRAPH: dict[str, tuple[tuple[str, float], ...]] = {
    LOGIN: ((HOME, 1.0),),
    HOME: ((VIEW_PRODUCT, 0.9), (EXIT, 0.1)),
    VIEW_PRODUCT: ((CART, 0.3), (HOME, 0.5), (EXIT, 0.2)),
    CART: ((HOME, 0.4), (CHECKOUT, 0.5), (EXIT, 0.1)),
    CHECKOUT: ((EXIT, 0.9), (HOME, 0.1)),
}

# Cumulative form for a fast draw.
_CUMULATIVE: dict[str, tuple[tuple[float, str], ...]] = {}
for _node, _edges in GRAPH.items():
    _acc = 0.0
    _rows = []
    for _target, _p in _edges:
        _acc += _p
        _rows.append((_acc, _target))
    _CUMULATIVE[_node] = tuple(_rows)

# A walk could in principle loop for long; real visits end, so cap the steps.
MAX_STEPS = 60


def next_node(node: str, rng: random.Random) -> str:
    draw = rng.random()
    rows = _CUMULATIVE[node]
    for bound, target in rows:
        if draw < bound:
            return target
    return rows[-1][1]


def walk(rng: random.Random) -> list[str]:
    """The nodes of one visit, LOGIN first and EXIT last."""
    nodes = [LOGIN]
    node = LOGIN
    while node != EXIT:
        node = EXIT if len(nodes) >= MAX_STEPS - 1 else next_node(node, rng)
        nodes.append(node)
    return nodes
