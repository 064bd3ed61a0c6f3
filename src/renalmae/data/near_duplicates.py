"""Near-duplicate images (a frame re-exported, resized, re-compressed or annotated), found by perceptual hash.

Each image gets a 256-bit perceptual hash (pHash: the signs of the low-frequency 16×16 DCT block of a 64×64
greyscale copy against their median; Zauner, *Implementation and benchmarking of perceptual image hash
functions*, 2010), computed by the `imagehash` library. Two images are near-duplicates when their hashes
differ in at most `data.near_duplicate_bits` bits. Measured on the shared data (200 kidney frames, the
1,334 fetal head frames, the phantom): JPEG re-compressed copies differ in <= 8 bits, copies at twice the
size in <= 16, copies with burned-in text and a caliper line in a median 16 (90 % <= 24), distinct
phantom images in >= 48; a 5 % crop moves a hash by ~84 bits, so cropped copies are found only when
`data.crop: auto` cuts both to the same sector first.

Pairs are searched among labelled images and between labelled and pool images (the pool itself is never
split, so pool-pool pairs are not needed). Near-duplicate labelled images form clusters (connected
components); a cluster becomes one split group, so near-copies never cross a fold or the test line.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from PIL import Image

HASH_SIZE = 16  # 16 × 16 = 256 bits
HASH_WORDS = HASH_SIZE * HASH_SIZE // 64
PAIR_CHUNK = 256  # rows compared at once: PAIR_CHUNK × N × HASH_WORDS uint64 in memory


def perceptual_hash(image: Image.Image) -> str:
    """256-bit pHash of a greyscale image (any size) as 64 hex digits.

    A large image is first box-reduced by a whole factor to at least 64 pixels a side (`Image.reduce`):
    the hash reads only a 64 × 64 copy, and this makes it 2-3 times cheaper than resampling the full
    image (what `imagehash` does then is unchanged).
    """
    import imagehash

    factor = min(image.size) // (4 * HASH_SIZE)
    return str(imagehash.phash(image.reduce(factor) if factor >= 2 else image, hash_size=HASH_SIZE))


def hash_words(hashes: pd.Series | list[str]) -> np.ndarray:
    """uint64 [N, 4] from 64-hex-digit hashes (the bit order is irrelevant to Hamming distances)."""
    raw = b"".join(bytes.fromhex(value) for value in hashes)
    return np.frombuffer(raw, dtype=">u8").astype(np.uint64).reshape(len(hashes), HASH_WORDS)


def near_pairs(words: np.ndarray, candidates: np.ndarray, others: np.ndarray, max_bits: int) -> pd.DataFrame:
    """Pairs (a, b, bits) of rows a in `candidates` and b in `others`, a != b, whose hashes differ in at
    most `max_bits` bits; a pair of two candidates appears once (a < b). Rows index `words`."""
    found = []
    other_words = words[others]
    candidate_set = np.zeros(len(words), dtype=bool)
    candidate_set[candidates] = True
    for start in range(0, len(candidates), PAIR_CHUNK):
        rows = candidates[start : start + PAIR_CHUNK]
        bits = np.zeros((len(rows), len(others)), dtype=np.uint16)
        for word in range(HASH_WORDS):
            bits += np.bitwise_count(words[rows, word][:, None] ^ other_words[None, :, word])
        row_index, other_index = np.nonzero(bits <= max_bits)
        a, b = rows[row_index], others[other_index]
        keep = (a != b) & ~(candidate_set[b] & (b < a))
        found.append(pd.DataFrame({"a": a[keep], "b": b[keep], "bits": bits[row_index, other_index][keep]}))
    pairs = pd.concat(found, ignore_index=True) if found else pd.DataFrame(columns=["a", "b", "bits"])
    return pairs.astype({"a": np.int64, "b": np.int64, "bits": np.int64})


@dataclass(frozen=True)
class NearDuplicates:
    """Near-duplicate pairs of a table (row positions `a`, `b` and their Hamming distance `bits`)."""

    table: pd.DataFrame
    pairs: pd.DataFrame

    @classmethod
    def find(cls, table: pd.DataFrame, max_bits: int | None) -> NearDuplicates:
        """Pairs among labelled rows and between labelled and pool rows of `table` (column `phash`)."""
        table = table.reset_index(drop=True)
        has_hash = table["phash"].notna().to_numpy()
        if max_bits is None or not has_hash.any():
            return cls(table, pd.DataFrame({"a": [], "b": [], "bits": []}, dtype=np.int64))
        words = np.zeros((len(table), HASH_WORDS), dtype=np.uint64)
        words[has_hash] = hash_words(table.loc[has_hash, "phash"].tolist())
        labelled = np.flatnonzero(has_hash & (table["origin"] == "labelled").to_numpy())
        return cls(table, near_pairs(words, labelled, np.flatnonzero(has_hash), max_bits))

    def _labels(self, column: str) -> tuple[np.ndarray, np.ndarray]:
        values = self.table[column].to_numpy()
        return values[self.pairs["a"].to_numpy()], values[self.pairs["b"].to_numpy()]

    @property
    def labelled_pairs(self) -> pd.DataFrame:
        origin_a, origin_b = self._labels("origin")
        return self.pairs[(origin_a == "labelled") & (origin_b == "labelled")]

    @property
    def conflicting_pairs(self) -> pd.DataFrame:
        """Labelled pairs whose two labels differ."""
        label_a, label_b = self._labels("label")
        origin_a, origin_b = self._labels("origin")
        both = (origin_a == "labelled") & (origin_b == "labelled")
        return self.pairs[both & (label_a != label_b)]

    def without_exact_copies(self) -> NearDuplicates:
        """The pairs that are not pixel-identical copies (those are the exact-duplicate rules' business)."""
        sha_a, sha_b = self._labels("sha256")
        return NearDuplicates(self.table, self.pairs[sha_a != sha_b])

    def near_groups(self) -> pd.Series:
        """Per row: the id of the first row of its near-duplicate cluster of labelled images, else null."""
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        pairs, n = self.labelled_pairs, len(self.table)
        edges = coo_matrix((np.ones(len(pairs)), (pairs["a"], pairs["b"])), shape=(n, n))
        _, component = connected_components(edges, directed=False)
        size = np.bincount(component)
        first_row = pd.Series(np.arange(n)).groupby(component).transform("min").to_numpy()
        in_cluster = (size[component] > 1) & (self.table["origin"] == "labelled").to_numpy()
        ids = self.table["id"].to_numpy()[first_row]
        return pd.Series(np.where(in_cluster, ids, None), index=self.table.index, dtype="object")

    def conflicts_per_row(self) -> np.ndarray:
        """Per row: how many near-duplicates of it carry another label."""
        counts = np.zeros(len(self.table), dtype=np.int64)
        conflicting = self.conflicting_pairs
        np.add.at(counts, conflicting["a"].to_numpy(), 1)
        np.add.at(counts, conflicting["b"].to_numpy(), 1)
        return counts

    def summary(self) -> dict:
        """Counts for people and for the evaluation report (see the module docstring)."""
        labelled = self.labelled_pairs
        groups = self.table["group"].fillna(self.table["id"]).to_numpy()
        cross_group = groups[labelled["a"].to_numpy()] != groups[labelled["b"].to_numpy()]
        origin_a, origin_b = self._labels("origin")
        pool_rows = set(self.pairs["b"][origin_b == "pool"]) | set(self.pairs["a"][origin_a == "pool"])
        clusters = self.near_groups().dropna()
        return {
            "pairs": len(labelled),
            "pairs_across_groups": int(cross_group.sum()),
            "conflicting_label_pairs": len(self.conflicting_pairs),
            "clusters": int(clusters.nunique()),
            "images_in_clusters": len(clusters),
            "pool_images_near_labelled": len(pool_rows),
        }


def merge_groups(groups: np.ndarray, near_groups: np.ndarray | None) -> np.ndarray:
    """Split groups that keep near-duplicates together: groups joined through shared near-duplicate clusters
    (connected components), each named by its smallest member group."""
    groups = np.asarray(groups, dtype=object).astype(str)
    if near_groups is None or pd.isna(near_groups).all():
        return groups
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    group_codes, group_names = pd.factorize(groups)
    clustered = ~pd.isna(near_groups)
    cluster_codes, _ = pd.factorize(np.asarray(near_groups, dtype=object)[clustered])
    n_groups = len(group_names)
    edges = coo_matrix(
        (np.ones(clustered.sum()), (group_codes[clustered], n_groups + cluster_codes)),
        shape=(n_groups + cluster_codes.max() + 1,) * 2,
    )
    _, component = connected_components(edges, directed=False)
    name_of_component = pd.Series(group_names).groupby(component[:n_groups]).transform("min").to_numpy()
    return name_of_component[group_codes]
