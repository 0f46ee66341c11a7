"""Which principal components carry which factor, and where does a group sit on a direction?

A small analysis on top of a recipe's (cached) embeddings, for crossed designs whose labels
name several factors, e.g. ``de/computer`` = language ``de`` x topic ``computer``:

- for each of the first principal components, eta squared of each factor (the share of
  that PC's variance explained by the factor's group means: 1 = the PC is that factor,
  0 = unrelated), with a permutation p-value (labels shuffled, 999 times);
- k-means with k = the number of levels of each factor (10 seeds): the adjusted Rand index
  against that factor, and against shuffled labels;
- ``--direction A:B --project C``: the unit direction from the mean of group A to the mean of
  group B, and where group C's mean falls on it (0 = at A, 1 = at B).

Usage (after the recipe has run once, so the embeddings come from the cache):

    python recipes/analysis/factors.py recipes/topics-and-languages.yaml --names language,topic
    python recipes/analysis/factors.py recipes/languages.yaml --direction en:es --project en-to-es
"""

from __future__ import annotations

import argparse

import numpy as np


def eta_squared(values: np.ndarray, groups: np.ndarray) -> float:
    total = float(((values - values.mean()) ** 2).sum())
    between = sum(float((groups == g).sum()) * (float(values[groups == g].mean())
                                                - float(values.mean())) ** 2
                  for g in np.unique(groups))
    return between / total if total > 0 else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("recipe")
    parser.add_argument("--names", default=None,
                        help="comma-separated factor names for the '/'-separated label parts")
    parser.add_argument("--components", type=int, default=8)
    parser.add_argument("--direction", default=None, help="A:B, two labels")
    parser.add_argument("--project", default=None, help="label(s) to place on A->B, comma-sep")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    args = parser.parse_args()

    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.metrics import adjusted_rand_score

    import embedforensics as ef

    emb = ef.embed(args.recipe, overrides=args.overrides, progress=False)
    X = emb.X.astype(np.float64)
    labels = np.array([str(v) for v in emb.labels])
    rng = np.random.default_rng(args.seed)
    print(f"n = {len(labels)}, dim = {X.shape[1]}; groups: "
          + ", ".join(f"{g} {int((labels == g).sum())}" for g in np.unique(labels)))

    if args.names:
        names = args.names.split(",")
        parts = np.array([lab.split("/") for lab in labels])
        factors = {n: parts[:, i] for i, n in enumerate(names)}
        pca = PCA(n_components=args.components, random_state=args.seed).fit(X)
        scores = pca.transform(X)
        print("\n| PC | variance | " + " | ".join(f"eta² {n} (p)" for n in names) + " |")
        print("|---|---|" + "---|" * len(names))
        for k in range(args.components):
            cells = []
            for n in names:
                eta = eta_squared(scores[:, k], factors[n])
                null = [eta_squared(scores[:, k], rng.permutation(factors[n]))
                        for _ in range(999)]
                p = (1 + sum(v >= eta for v in null)) / 1000
                cells.append(f"{eta:.3f} ({p:.3f})")
            print(f"| {k + 1} | {pca.explained_variance_ratio_[k]:.3f} | "
                  + " | ".join(cells) + " |")
        print("\n| k-means k = | against | ARI mean ± sd (10 seeds) | ARI vs shuffled |")
        print("|---|---|---|---|")
        for n in [*names, "cell"]:
            target = labels if n == "cell" else factors[n]
            k = len(np.unique(target))
            aris, nulls = [], []
            for s in range(10):
                pred = KMeans(n_clusters=k, n_init=1, random_state=args.seed + s).fit_predict(X)
                aris.append(adjusted_rand_score(target, pred))
                nulls.append(adjusted_rand_score(rng.permutation(target), pred))
            print(f"| {k} | {n} | {np.mean(aris):.3f} ± {np.std(aris, ddof=1):.3f} | "
                  f"{np.mean(nulls):.3f} ± {np.std(nulls, ddof=1):.3f} |")

    if args.direction:
        a, b = args.direction.split(":")
        mean = {g: X[labels == g].mean(0) for g in np.unique(labels)}
        d = mean[b] - mean[a]
        length = float(np.linalg.norm(d))
        u = d / length
        print(f"\ndirection {a} -> {b}: distance between means {length:.4f}")
        print(f"| group | n | position on the direction (0 = {a}, 1 = {b}), mean ± sd | "
              "distance of the mean to " + b + " |")
        print("|---|---|---|---|")
        for g in [a, b, *(args.project.split(",") if args.project else [])]:
            pos = (X[labels == g] - mean[a]) @ u / length
            print(f"| {g} | {int((labels == g).sum())} | {pos.mean():.3f} ± {pos.std(ddof=1):.3f}"
                  f" | {float(np.linalg.norm(mean[g] - mean[b])):.4f} |")


if __name__ == "__main__":
    main()
