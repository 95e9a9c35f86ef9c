"""Retrieval quality of ``cnncodes similar``: precision@1, precision@5 and mAP on class-labelled sets.

Queries are the held-out split, the index is the train split, and a neighbour is relevant
when it has the query's class: hymenoptera val (153) against train (244), chest_xray test
(624) against train (5216). Codes are EfficientNet-Lite0 penultimate (the default), read
from the cache after the first run. Rows compare the search-side choices of
:class:`cnncodes.CodeIndex` (what ``similar`` runs): L2 normalization (the default), power
normalization (signed square root, then L2), PCA-whitening fitted on the index, and faiss'
approximate HNSW index, whose recall@5 against exact search is reported. mAP ranks the
whole index (exact search only).
Prints a Markdown table; the last line is a JSON object of every figure.

Run: python scripts/bench_retrieval.py [--sets hymenoptera chest_xray] [--cache DIR]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import cnncodes

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SPLITS = {"hymenoptera": ("train", "val"), "chest_xray": ("train", "test")}
VARIANTS = {
    "exact, L2": {},
    "exact, power + L2": {"normalize": "power"},
    "exact, PCA-whiten 64": {"whiten": 64},
    "exact, PCA-whiten 128": {"whiten": 128},
    "exact, PCA-whiten 256": {"whiten": 256},
    "exact, power + PCA-whiten 128": {"normalize": "power", "whiten": 128},
    "faiss HNSW, L2": {"method": "faiss"},
}


def average_precision(relevant: np.ndarray) -> np.ndarray:
    """AP of each row of a boolean (n_queries, n_ranked) relevance matrix, ranked best first."""
    hits = np.cumsum(relevant, axis=1)
    precision_at = hits / np.arange(1, relevant.shape[1] + 1)
    n_relevant = np.maximum(relevant.sum(axis=1), 1)
    return (precision_at * relevant).sum(axis=1) / n_relevant


def evaluate(index_codes, index_labels, query_codes, query_labels, exact_top5, **settings) -> dict[str, float]:
    searcher = cnncodes.CodeIndex(**settings).fit(index_codes)
    start = time.monotonic()
    _, top = searcher.kneighbors(query_codes, n_neighbors=5)
    seconds = time.monotonic() - start
    relevant = index_labels[top] == query_labels[:, None]
    figures = {"p_at_1": float(relevant[:, 0].mean()), "p_at_5": float(relevant.mean()), "query_s": seconds}
    if settings.get("method") == "faiss":
        overlap = [len(set(a) & set(b)) / 5 for a, b in zip(top, exact_top5)]
        figures["recall_at_5_vs_exact"] = float(np.mean(overlap))
    else:
        _, ranking = searcher.kneighbors(query_codes, n_neighbors=len(index_codes))
        figures["map"] = float(average_precision(index_labels[ranking] == query_labels[:, None]).mean())
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=list(SPLITS), choices=list(SPLITS))
    parser.add_argument("--cache", type=Path, default=None, help="code cache folder (default: the user cache)")
    args = parser.parse_args()
    cache = args.cache if args.cache is not None else True
    figures: dict[str, dict[str, dict[str, float]]] = {}
    for name in args.sets:
        train, held_out = (SHARED / name / split for split in SPLITS[name])
        index = cnncodes.extract(train, cache=cache, progress=False)
        queries = cnncodes.extract(held_out, cache=cache, progress=False)
        exact = cnncodes.CodeIndex().fit(index.codes).kneighbors(queries.codes, n_neighbors=5)[1]
        figures[name] = {
            variant: evaluate(index.codes, index.labels, queries.codes, queries.labels, exact, **settings)
            for variant, settings in VARIANTS.items()
        }
    print("| search | " + " | ".join(f"{n} P@1 | P@5 | mAP" for n in figures) + " |")
    print("|---|" + "---:|---:|---:|" * len(figures))
    for variant in VARIANTS:
        cells = []
        for name in figures:
            row = figures[name][variant]
            third = f"{row['map']:.3f}" if "map" in row else f"recall@5 {row['recall_at_5_vs_exact']:.3f}"
            cells += [f"{row['p_at_1']:.3f}", f"{row['p_at_5']:.3f}", third]
        print(f"| {variant} | " + " | ".join(cells) + " |")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
