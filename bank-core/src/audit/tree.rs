//! The RFC 6962 Merkle tree over the audit records' canonical bytes ([`super::encoding`]), as
//! transparency logs build it: leaf `i` (0-based) is record `seq = i + 1`, a leaf hash is
//! `SHA-256(0x00 || bytes)`, an interior node `SHA-256(0x01 || left || right)`.
//!
//! The tree math is `tlog_tiles` (a port of Go's `golang.org/x/mod/sumdb/tlog`, tested with Go's
//! and Certificate Transparency's vectors); this module only plugs the log's storage into it:
//! - an adapter stores, for each appended record, the hashes [`hashes_to_store`] returns at the
//!   `tlog` *stored-hash indexes* starting at `stored_hash_index(0, i)` (about two per record),
//!   and answers them through [`super::AuditLog::tree_hashes`];
//! - [`root`] and [`inclusion_proof`] read what they need from there (a handful of hashes, never
//!   the whole tree), through [`read_with`], which asks the adapter once for exactly the indexes
//!   `tlog_tiles` wants;
//! - [`Frontier`] computes roots while streaming records (verification), in `O(log n)` memory.
//!
//! Verifiers outside this code base check an inclusion proof with any RFC 6962 / RFC 9162
//! implementation: [`check_inclusion`] is `tlog_tiles::check_record`.

use parking_lot::Mutex;
use rustc_hash::FxHashMap;
use tlog_tiles::{Hash, HashReader};

use super::{AuditLog, Digest};
use crate::error::{Error, Result};

pub use tlog_tiles::{self, EMPTY_HASH, stored_hash_count, stored_hash_index};

/// The RFC 6962 leaf hash of a record's canonical bytes.
pub fn leaf_hash(bytes: &[u8]) -> Digest {
    tlog_tiles::record_hash(bytes).0
}

/// The hashes to store when appending leaf `index` (0-based) with leaf hash `leaf`, to be stored
/// from `stored_hash_index(0, index)` on. Reads at most `log2(index)` earlier stored hashes from
/// `stored`.
pub fn hashes_to_store(index: u64, leaf: Digest, stored: &impl HashReader) -> Result<Vec<Digest>> {
    tlog_tiles::stored_hashes_for_record_hash(index, Hash(leaf), stored)
        .map(|hashes| hashes.into_iter().map(|h| h.0).collect())
        .map_err(tree_error)
}

/// The stored hashes of a whole log in memory (the in-memory adapter's tree, and tests').
#[derive(Debug, Default, Clone)]
pub struct MemoryTree {
    hashes: Vec<Hash>,
    leaves: u64,
}

impl MemoryTree {
    /// An empty tree.
    pub fn new() -> Self {
        MemoryTree::default()
    }

    /// Appends a leaf whose hash is `leaf`.
    pub fn push(&mut self, leaf: Digest) -> Result<()> {
        let hashes = hashes_to_store(self.leaves, leaf, self)?;
        self.hashes.extend(hashes.into_iter().map(Hash));
        self.leaves += 1;
        Ok(())
    }

    /// Leaves appended.
    pub fn size(&self) -> u64 {
        self.leaves
    }

    /// The stored hashes at `indexes`.
    pub fn read(&self, indexes: &[u64]) -> Result<Vec<Digest>> {
        self.read_hashes(indexes).map(|hashes| hashes.into_iter().map(|h| h.0).collect()).map_err(tree_error)
    }
}

impl HashReader for MemoryTree {
    fn read_hashes(&self, indexes: &[u64]) -> std::result::Result<Vec<Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|&i| {
                usize::try_from(i)
                    .ok()
                    .and_then(|i| self.hashes.get(i).copied())
                    .ok_or(tlog_tiles::Error::IndexesNotInTree)
            })
            .collect()
    }
}

/// Runs `compute` (a `tlog_tiles` function over a [`HashReader`]) against `log`'s stored hashes:
/// first against a reader that only notes the indexes asked for, then, once `log` answered
/// those, against them. Every `tlog_tiles` computation used here asks for its hashes in one
/// call, so two runs suffice; a computation that asked for more would fail, not loop.
pub async fn read_with<T>(
    log: &dyn AuditLog,
    compute: impl Fn(&TwoPhaseReader) -> std::result::Result<T, tlog_tiles::Error>,
) -> Result<T> {
    let wanted = TwoPhaseReader::default();
    if let Ok(value) = compute(&wanted) {
        return Ok(value); // asked for nothing (an empty tree, a one-leaf proof)
    }
    let indexes = wanted.wanted.into_inner();
    let hashes = log.tree_hashes(&indexes).await?;
    if hashes.len() != indexes.len() {
        return Err(Error::storage("the audit log answered the wrong number of tree hashes", false));
    }
    let known = indexes.into_iter().zip(hashes.into_iter().map(Hash)).collect();
    compute(&TwoPhaseReader { known: Some(known), wanted: Mutex::default() }).map_err(tree_error)
}

/// The reader of [`read_with`]: first it notes the indexes asked for and answers none, then it
/// answers the hashes fetched for them.
#[derive(Debug, Default)]
pub struct TwoPhaseReader {
    known: Option<FxHashMap<u64, Hash>>,
    wanted: Mutex<Vec<u64>>,
}

impl HashReader for TwoPhaseReader {
    fn read_hashes(&self, indexes: &[u64]) -> std::result::Result<Vec<Hash>, tlog_tiles::Error> {
        match &self.known {
            None => {
                self.wanted.lock().extend_from_slice(indexes);
                Err(tlog_tiles::Error::IndexesNotInTree)
            }
            Some(known) => {
                indexes.iter().map(|i| known.get(i).copied().ok_or(tlog_tiles::Error::IndexesNotInTree)).collect()
            }
        }
    }
}

/// The root of the tree of the first `size` records of `log`.
pub async fn root(log: &dyn AuditLog, size: u64) -> Result<Digest> {
    read_with(log, |reader| tlog_tiles::tree_hash(size, reader)).await.map(|h| h.0)
}

/// The RFC 6962 audit path of leaf `index` (record `index + 1`) in the tree of `size` records.
pub async fn inclusion_proof(log: &dyn AuditLog, index: u64, size: u64) -> Result<Vec<Digest>> {
    if index >= size {
        return Err(Error::invalid(format!("record {} is not in a tree of {size} records", index + 1)));
    }
    read_with(log, |reader| tlog_tiles::prove_record(size, index, reader))
        .await
        .map(|proof| proof.into_iter().map(|h| h.0).collect())
}

/// Whether `proof` shows that the tree of `size` leaves with root `root` holds leaf `index` whose
/// leaf hash is `leaf` (RFC 6962 §2.1.1; `tlog_tiles::check_record`).
pub fn check_inclusion(proof: &[Digest], size: u64, root: Digest, index: u64, leaf: Digest) -> bool {
    let proof: Vec<Hash> = proof.iter().copied().map(Hash).collect();
    tlog_tiles::check_record(&proof, size, Hash(root), index, Hash(leaf)).is_ok()
}

/// The perfect subtrees of a tree prefix, largest first: enough to compute its root and to add
/// leaves, in `O(log n)` memory (verification streams millions of records through one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    /// `(height, hash)` of each perfect subtree, left to right; heights strictly decrease.
    subtrees: Vec<(u8, Digest)>,
    size: u64,
}

impl Frontier {
    /// The frontier of the empty tree.
    pub fn new() -> Self {
        Frontier::default()
    }

    /// Leaves so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Adds the leaf whose hash is `leaf`.
    pub fn push(&mut self, leaf: Digest) {
        let mut node = (0_u8, leaf);
        while let Some(&(height, left)) = self.subtrees.last() {
            if height != node.0 {
                break;
            }
            self.subtrees.pop();
            node = (height + 1, tlog_tiles::node_hash(Hash(left), Hash(node.1)).0);
        }
        self.subtrees.push(node);
        self.size += 1;
    }

    /// The RFC 6962 root of the leaves so far.
    pub fn root(&self) -> Digest {
        let mut subtrees = self.subtrees.iter().rev();
        let Some(&(_, mut acc)) = subtrees.next() else {
            return EMPTY_HASH.0;
        };
        for &(_, left) in subtrees {
            acc = tlog_tiles::node_hash(Hash(left), Hash(acc)).0;
        }
        acc
    }

    /// The stored-hash indexes of the frontier of a tree of `size` leaves (what
    /// [`Frontier::from_stored`] needs).
    pub fn stored_indexes(size: u64) -> Vec<u64> {
        tlog_tiles::sub_tree_index(0, size, Vec::new())
    }

    /// The frontier of a tree of `size` leaves from the stored hashes at
    /// [`Frontier::stored_indexes`]. Nothing proves them right: compare [`Frontier::root`] with
    /// a signed root before trusting it.
    pub fn from_stored(size: u64, hashes: &[Digest]) -> Result<Frontier> {
        let indexes = Frontier::stored_indexes(size);
        if indexes.len() != hashes.len() {
            return Err(Error::invalid("a tree frontier needs one hash per perfect subtree"));
        }
        let subtrees = indexes
            .iter()
            .zip(hashes)
            .map(|(&index, &hash)| (tlog_tiles::split_stored_hash_index(index).0, hash))
            .collect();
        Ok(Frontier { subtrees, size })
    }
}

fn tree_error(e: tlog_tiles::Error) -> Error {
    Error::storage(format!("audit tree: {e}"), false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(i: u64) -> Digest {
        leaf_hash(&i.to_be_bytes())
    }

    /// The frontier's roots equal `tlog_tiles::tree_hash` over the stored hashes at every size,
    /// and a frontier rebuilt from stored hashes goes on identically.
    #[test]
    fn frontier_agrees_with_the_stored_tree() {
        let mut tree = MemoryTree::new();
        let mut frontier = Frontier::new();
        assert_eq!(frontier.root(), EMPTY_HASH.0);
        for i in 0..70 {
            tree.push(leaf(i)).expect("push");
            frontier.push(leaf(i));
            let size = i + 1;
            let expected = tlog_tiles::tree_hash(size, &tree).expect("tree hash").0;
            assert_eq!(frontier.root(), expected, "size {size}");
            let stored = tree.read(&Frontier::stored_indexes(size)).expect("read");
            assert_eq!(Frontier::from_stored(size, &stored).expect("rebuild"), frontier, "size {size}");
        }
        assert_eq!(tree.hashes.len() as u64, stored_hash_count(70));
    }

    /// RFC 6962's worked definition on three leaves: root = H(1 || H(1 || l0 || l1) || l2).
    #[test]
    fn three_leaf_root_is_rfc_6962() {
        let mut frontier = Frontier::new();
        for i in 0..3 {
            frontier.push(leaf(i));
        }
        let left = tlog_tiles::node_hash(Hash(leaf(0)), Hash(leaf(1)));
        assert_eq!(frontier.root(), tlog_tiles::node_hash(left, Hash(leaf(2))).0);
        // And the leaf hash is SHA-256(0x00 || bytes).
        use sha2::Digest as _;
        let mut prefixed = vec![0_u8];
        prefixed.extend_from_slice(&0_u64.to_be_bytes());
        assert_eq!(leaf(0), <[u8; 32]>::from(sha2::Sha256::digest(&prefixed)));
    }

    /// Every leaf's proof checks against the root at every size; a wrong leaf, index or root
    /// does not.
    #[test]
    fn proofs_check_and_forgeries_do_not() {
        let mut tree = MemoryTree::new();
        for i in 0..17 {
            tree.push(leaf(i)).expect("push");
        }
        for size in 1..=17 {
            let root = tlog_tiles::tree_hash(size, &tree).expect("root").0;
            for index in 0..size {
                let proof: Vec<Digest> =
                    tlog_tiles::prove_record(size, index, &tree).expect("prove").into_iter().map(|h| h.0).collect();
                assert!(check_inclusion(&proof, size, root, index, leaf(index)), "{index} in {size}");
                assert!(!check_inclusion(&proof, size, root, index, leaf(index + 100)), "wrong leaf");
                assert!(!check_inclusion(&proof, size, [7; 32], index, leaf(index)), "wrong root");
                if size > 1 {
                    let other = (index + 1) % size;
                    assert!(!check_inclusion(&proof, size, root, other, leaf(index)), "wrong index");
                }
            }
        }
    }
}
