"""SidIndex: one-to-one table, prefix-tree queries, new and retired items, files."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from hsrl.errors import DataError
from hsrl.sid import PrefixIndex, SidIndex, build_sid_index, prefix_keys


def brute_force_encode(codebook, x: torch.Tensor) -> torch.Tensor:
    residual, tokens = x.clone(), []
    for level in range(codebook.levels):
        token = torch.cdist(residual, codebook.centroids[level]).argmin(1)
        tokens.append(token)
        residual = residual - codebook.centroids[level][token]
    return torch.stack(tokens, 1)


def test_every_item_round_trips_item_to_sid_to_item(rl4rs_index):
    index, report = rl4rs_index
    n = index.num_items
    assert n == 283 and index.num_live == 283
    assert (index.levels, index.codes) == (3, 16)
    assert index.item_sid.shape == (n + 1, 3) and index.item_sid.dtype == torch.long
    assert index.item_sid[0].tolist() == [-1, -1, -1] and not bool(index.live[0])
    ids = torch.arange(1, n + 1)
    assert torch.equal(index.items_of(index.item_sid[ids]), ids)
    assert torch.equal(index.sid_of(ids), index.item_sid[1:])
    assert report["collisions_after"] == 0
    assert report["items"] == 283 and len(report["levels_detail"]) == 3
    # Balanced level 1: 283 items over 16 codes -> 17 or 18 each.
    level1 = report["levels_detail"][0]
    assert (level1["items_per_code_min"], level1["items_per_code_max"]) == (17, 18)


def test_items_of_unknown_or_invalid_sids_is_zero(rl4rs_index):
    index, _ = rl4rs_index
    used = set(map(tuple, index.item_sid[1:].tolist()))
    free = next(s for s in itertools.product(range(16), repeat=3) if s not in used)
    queries = torch.tensor([list(free), [-1, 0, 0], [0, 16, 0], [-1, -1, -1]])
    assert index.items_of(queries).tolist() == [0, 0, 0, 0]
    batch = index.item_sid[1:9].reshape(2, 4, 3)  # any leading shape
    assert index.items_of(batch).tolist() == [[1, 2, 3, 4], [5, 6, 7, 8]]


def test_encoding_is_nearest_centroid_on_residuals(rl4rs_features, rl4rs_index):
    index, _ = rl4rs_index
    g = torch.Generator().manual_seed(4)
    fresh = torch.randn(50, 40, generator=g) + rl4rs_features[1:51]
    assert torch.equal(index.encode(fresh), brute_force_encode(index.codebook, fresh))


@pytest.mark.parametrize("dense_limit", [1, 1 << 20])  # sorted-key queries / dense counts
def test_children_and_counts_match_brute_force(rl4rs_index, dense_limit):
    index, _ = rl4rs_index
    sids = index.item_sid[1:]
    tree = PrefixIndex.from_table(
        index.item_sid, index.live, 16, dense_limit=dense_limit, bitmap_limit=dense_limit
    )
    for level in range(3):
        prefixes = torch.tensor(list(itertools.product(range(16), repeat=level)), dtype=torch.long)
        prefixes = prefixes.reshape(16**level, level)
        keys = prefix_keys(prefixes, 16)
        mask = tree.children_counts(keys, level) > 0
        expected = torch.zeros_like(mask)
        counts = torch.zeros(prefixes.shape[0], dtype=torch.long)
        for row, prefix in enumerate(prefixes):
            under = (sids[:, :level] == prefix).all(1)
            expected[row, sids[under, level]] = True
            counts[row] = under.sum()
        assert torch.equal(mask, expected)
        assert torch.equal(tree.count_under(keys, level), counts)
        full = tree.children_counts(keys, level) >= 16 ** (2 - level)  # subtree without a free SID
        assert torch.equal(tree.children_with_room(keys, level), ~full)
        if dense_limit > 1:
            assert torch.equal(index.children_mask(prefixes), expected)
            assert torch.equal(index.count_under(prefixes), counts)


def test_children_mask_takes_a_level_of_a_longer_buffer_and_rejects_bad_tokens(rl4rs_index):
    index, _ = rl4rs_index
    beams = index.item_sid[1:5]  # (4, L) full SIDs as a beam buffer
    mask = index.children_mask(beams, level=1)
    assert mask.shape == (4, 16) and mask[torch.arange(4), beams[:, 1]].all()
    bad = torch.tensor([[-1, 0], [16, 3]])
    assert not index.children_mask(bad).any()


def test_items_under_a_prefix(rl4rs_index):
    index, _ = rl4rs_index
    prefix = index.item_sid[10, :2]
    under = index.items_under(prefix)
    expect = ((index.item_sid[:, :2] == prefix).all(1) & index.live).nonzero().squeeze(1)
    assert sorted(under.tolist()) == expect.tolist()
    assert index.items_under(torch.tensor([], dtype=torch.long)).numel() == 283


def test_new_items_retire_and_reuse(rl4rs_features):
    index, _ = build_sid_index(rl4rs_features, levels=3, codes=16, seed=1)
    old = index.item_sid.clone()
    g = torch.Generator().manual_seed(0)
    fresh = rl4rs_features[1:41] + 0.01 * torch.randn(40, 40, generator=g)
    ids = index.add_items(fresh)
    assert ids.tolist() == list(range(284, 324))
    assert torch.equal(index.item_sid[:284], old)  # old items never move
    assert index.item_sid.shape == (324, 3) and index.live[284:].all()
    assert torch.equal(index.items_of(index.item_sid[1:]), torch.arange(1, 324))
    encoded = index.encode(fresh)
    keys = prefix_keys(encoded, 16)
    free = ~torch.isin(keys, prefix_keys(old[1:], 16))  # not held by an old item
    alone = torch.bincount(keys, minlength=16**3)[keys] == 1  # asked for by one new item
    assert torch.equal(index.item_sid[ids][free & alone], encoded[free & alone])
    # Collided: new items asking for an old item's SID, and all but one per shared free SID.
    shared = free & ~alone
    expected = int((~free).sum()) + int(shared.sum()) - torch.unique(keys[shared]).numel()
    assert index.last_placement.collided == expected

    retired = torch.tensor([3, 290])
    sid_of_3 = index.item_sid[3].clone()
    index.retire_items(retired)
    assert index.item_sid[retired].eq(-1).all() and not index.live[retired].any()
    assert index.items_of(sid_of_3[None]).tolist() == [0]
    assert not index.children_mask(sid_of_3[None, :2])[0, sid_of_3[2]]  # SIDs are unique
    assert index.num_live == 283 + 40 - 2 and index.num_items == 323
    # The freed SID goes to a new item that encodes to it.
    again = index.add_items(rl4rs_features[3:4])
    assert torch.equal(index.item_sid[again[0]], sid_of_3)
    assert (index.levels, index.codes) == (3, 16)
    with pytest.raises(Exception, match="already retired"):
        index.retire_items(torch.tensor([3]))
    with pytest.raises(Exception, match="outside 1..324"):
        index.retire_items(torch.tensor([0]))


def test_save_load_round_trip_and_catalogue_check(tmp_path, rl4rs_features, rl4rs_index):
    index, _ = rl4rs_index
    out = index.save(tmp_path / "sid")
    assert sorted(p.name for p in out.iterdir()) == [
        "codebook.npz",
        "sid_meta.json",
        "sid_table.npz",
    ]
    loaded = SidIndex.load(out, device="cpu", features=rl4rs_features)
    assert torch.equal(loaded.item_sid, index.item_sid) and torch.equal(loaded.live, index.live)
    assert torch.equal(loaded.codebook.centroids, index.codebook.centroids)
    assert (loaded.levels, loaded.codes, loaded.num_items) == (3, 16, 283)
    # Catalogue changes survive a save.
    ids = loaded.add_items(rl4rs_features[5:7] + 1.0)
    loaded.retire_items(torch.tensor([1]))
    loaded.save(out, overwrite=True)
    again = SidIndex.load(out, features=torch.cat([rl4rs_features, rl4rs_features[5:7] + 1.0]))
    assert torch.equal(again.item_sid, loaded.item_sid) and again.num_live == 284
    assert [c["op"] for c in again.changes] == ["add", "retire"] and ids.tolist() == [284, 285]
    assert torch.equal(again.to("cpu").item_sid, again.item_sid)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda f: f[:-1], "282 items, the SIDs were built for 283"),
        (lambda f: f[:, :30], "30-dim item features, the SIDs were built for 40"),
        (lambda f: _nudge(f), "differ from"),
    ],
)
def test_another_catalogue_is_refused(tmp_path, rl4rs_features, rl4rs_index, change, message):
    index, _ = rl4rs_index
    out = index.save(tmp_path / "sid")
    with pytest.raises(DataError, match=message):
        SidIndex.load(out, features=change(rl4rs_features.clone()))


def _nudge(features: torch.Tensor) -> torch.Tensor:
    features[100, 7] += 1e-3
    return features


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[-40] ^= 0xFF
    path.write_bytes(bytes(data))


def _edit_meta(**changes):
    def edit(path):
        meta = json.loads(path.read_text())
        meta.update(changes)
        path.write_text(json.dumps(meta))

    return edit


@pytest.mark.parametrize(
    "file, damage, message, named",
    [
        ("codebook.npz", _truncate, "damaged or was changed", "codebook.npz"),
        ("sid_table.npz", _flip_a_byte, "damaged or was changed", "sid_table.npz"),
        ("sid_meta.json", lambda p: p.write_text("{not json"), "not valid JSON", "sid_meta.json"),
        ("sid_meta.json", _edit_meta(format="other"), "not an hsrl SID index", "sid_meta.json"),
        ("sid_meta.json", _edit_meta(format_version=99), "version 99 is not", "sid_meta.json"),
        ("sid_meta.json", _edit_meta(levels="3"), "'levels' must be a positive", "sid_meta.json"),
        ("sid_meta.json", _edit_meta(codes=17), r"must be float \(3, 17, 40\)", "codebook.npz"),
        ("sid_meta.json", _edit_meta(files=None), "'files' must give the sha256", "sid_meta.json"),
        ("codebook.npz", lambda p: p.unlink(), "file not found", "codebook.npz"),
    ],
)
def test_damaged_files_are_clear_errors(tmp_path, rl4rs_index, file, damage, message, named):
    index, _ = rl4rs_index
    out = index.save(tmp_path / "sid")
    damage(out / file)
    with pytest.raises(DataError, match=message) as info:
        SidIndex.load(out)
    assert named in str(info.value)


def _rewrite_table(out, item_sid, live):
    """Write a hand-edited table and re-sign it, as a buggy tool might."""
    from hsrl.io import save_arrays, sha256_file

    save_arrays(out / "sid_table.npz", item_sid=item_sid, live=live)
    meta = json.loads((out / "sid_meta.json").read_text())
    meta["files"]["sid_table.npz"]["sha256"] = sha256_file(out / "sid_table.npz")
    (out / "sid_meta.json").write_text(json.dumps(meta))


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda s, v: (np.concatenate([s, s[1:2]]), np.append(v, True)),
            "item_sid must be integer",
        ),
        (lambda s, v: (np.where(np.arange(len(s))[:, None] == 2, s[1], s), v), "share a SID"),
        (lambda s, v: (np.where(s == s[1, 0], 16, s), v), "tokens in 0..15"),
        (lambda s, v: (s, np.ones_like(v)), "padding item and cannot be live"),
        (lambda s, v: (s, v.astype(np.int8)), "live must be bool"),
    ],
)
def test_inconsistent_tables_are_clear_errors(tmp_path, rl4rs_index, edit, message):
    index, _ = rl4rs_index
    out = index.save(tmp_path / "sid")
    with np.load(out / "sid_table.npz") as npz:
        item_sid, live = edit(npz["item_sid"], npz["live"])
    _rewrite_table(out, item_sid, live)
    with pytest.raises(DataError, match=message):
        SidIndex.load(out)
