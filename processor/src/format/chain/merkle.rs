//! §4.3: RFC 6962's Merkle tree hash with BLAKE3, and audit paths for proofs.

use super::hash::Hash;

/// `leaf(d) = H(0x00 || d)`.
pub fn leaf(d: &Hash) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(&[0x00]);
    h.update(d);
    *h.finalize().as_bytes()
}

/// `node(l, r) = H(0x01 || l || r)`.
pub fn node(l: &Hash, r: &Hash) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(&[0x01]);
    h.update(l);
    h.update(r);
    *h.finalize().as_bytes()
}

/// The largest power of two strictly less than `n` (n > 1).
fn split(n: usize) -> usize {
    debug_assert!(n > 1);
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

fn mth(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        1 => leaf(&leaves[0]),
        n => {
            let k = split(n);
            node(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

/// `MTH(D)` over the leaf data `leaves` (entry and quarantine hashes in
/// source-offset order); `None` for an empty segment, which gets no anchor.
pub fn merkle_root(leaves: &[Hash]) -> Option<Hash> {
    if leaves.is_empty() {
        None
    } else {
        Some(mth(leaves))
    }
}

/// RFC 6962 §2.1.1 audit path of leaf `index`: the sibling hashes from the
/// leaf up to the root. `None` if `index` is out of range.
pub fn audit_path(leaves: &[Hash], index: usize) -> Option<Vec<Hash>> {
    if index >= leaves.len() {
        return None;
    }
    let mut path = Vec::new();
    path_into(leaves, index, &mut path);
    Some(path)
}

fn path_into(leaves: &[Hash], m: usize, path: &mut Vec<Hash>) {
    let n = leaves.len();
    if n <= 1 {
        return;
    }
    let k = split(n);
    if m < k {
        path_into(&leaves[..k], m, path);
        path.push(mth(&leaves[k..]));
    } else {
        path_into(&leaves[k..], m - k, path);
        path.push(mth(&leaves[..k]));
    }
}

/// Checks that leaf data `d` at `index` of a tree of `size` leaves, with
/// audit path `path`, has root `root` (RFC 9162 §2.1.3.2).
pub fn verify_audit_path(d: &Hash, index: usize, size: usize, path: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = leaf(d);
    for p in path {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node(p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    snode == 0 && &r == root
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n).map(|i| [i as u8; 32]).collect()
    }

    #[test]
    fn shape_follows_rfc6962() {
        let d = leaves(3);
        let expected = node(&node(&leaf(&d[0]), &leaf(&d[1])), &leaf(&d[2]));
        assert_eq!(merkle_root(&d), Some(expected));
        assert_eq!(merkle_root(&d[..1]), Some(leaf(&d[0])));
        assert_eq!(merkle_root(&[]), None);
        let d5 = leaves(5);
        let left = node(
            &node(&leaf(&d5[0]), &leaf(&d5[1])),
            &node(&leaf(&d5[2]), &leaf(&d5[3])),
        );
        assert_eq!(merkle_root(&d5), Some(node(&left, &leaf(&d5[4]))));
    }

    #[test]
    fn every_audit_path_verifies_for_sizes_1_to_33() {
        for n in 1..=33 {
            let d = leaves(n);
            let root = merkle_root(&d).expect("non-empty");
            for i in 0..n {
                let path = audit_path(&d, i).expect("in range");
                assert!(verify_audit_path(&d[i], i, n, &path, &root), "n={n} i={i}");
                let wrong = [0xee; 32];
                assert!(
                    !verify_audit_path(&wrong, i, n, &path, &root),
                    "n={n} i={i}"
                );
            }
        }
    }

    fn arb_leaves() -> impl Strategy<Value = Vec<Hash>> {
        prop::collection::vec(prop::array::uniform32(any::<u8>()), 1..40)
    }

    proptest! {
        #[test]
        fn changing_any_leaf_changes_the_root(d in arb_leaves(), i in any::<prop::sample::Index>(), bit in 0usize..256) {
            let i = i.index(d.len());
            let mut e = d.clone();
            e[i][bit / 8] ^= 1 << (bit % 8);
            prop_assert_ne!(merkle_root(&d), merkle_root(&e));
        }

        #[test]
        fn reordering_changes_the_root(d in arb_leaves(), i in any::<prop::sample::Index>(), j in any::<prop::sample::Index>()) {
            let (i, j) = (i.index(d.len()), j.index(d.len()));
            prop_assume!(d[i] != d[j]);
            let mut e = d.clone();
            e.swap(i, j);
            prop_assert_ne!(merkle_root(&d), merkle_root(&e));
        }

        #[test]
        fn adding_or_removing_a_leaf_changes_the_root(d in arb_leaves(), extra in prop::array::uniform32(any::<u8>()), i in any::<prop::sample::Index>()) {
            let mut added = d.clone();
            added.insert(i.index(d.len() + 1), extra);
            prop_assert_ne!(merkle_root(&d), merkle_root(&added));
            let mut removed = d.clone();
            removed.remove(i.index(d.len()));
            prop_assert_ne!(merkle_root(&d), merkle_root(&removed));
        }
    }
}
