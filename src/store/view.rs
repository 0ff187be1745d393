//! What a group commit reads: the tree, or the tree with the last group's writes over it
//! ([`View`]). The writer answers a group once its journal record is durable and writes it to
//! sled while the next group's record is being made durable (`writer.rs`), so the next group is
//! applied before sled holds the last one: it reads through a view that lays the last group's
//! squashed writes over the tree, a write there hiding the tree's value and a removal hiding
//! the key. Code that reads in a group commit takes any [`Read`]: the tree itself, for the
//! readers' paths, or a view.

use std::collections::BTreeMap;
use std::ops::Bound;

use sled::IVec;

use super::writes::Writes;

type Item = sled::Result<(IVec, IVec)>;

/// Point reads and prefix scans, of the tree or of a [`View`].
pub(super) trait Read {
    fn get(&self, key: impl AsRef<[u8]>) -> sled::Result<Option<IVec>>;
    /// The keys under `prefix` in key order, either end first.
    fn scan_prefix(&self, prefix: impl AsRef<[u8]>) -> Scan;
    /// The keys from `lo` to `hi`, both included, in key order, either end first.
    fn scan_range(&self, lo: &[u8], hi: &[u8]) -> Scan;
}

impl Read for sled::Tree {
    fn get(&self, key: impl AsRef<[u8]>) -> sled::Result<Option<IVec>> {
        sled::Tree::get(self, key)
    }

    fn scan_prefix(&self, prefix: impl AsRef<[u8]>) -> Scan {
        Scan::new(sled::Tree::scan_prefix(self, prefix), Vec::new())
    }

    fn scan_range(&self, lo: &[u8], hi: &[u8]) -> Scan {
        Scan::new(self.range(lo..=hi), Vec::new())
    }
}

/// A group's squashed writes by key: what a [`View`] lays over the tree.
#[derive(Default)]
pub(super) struct Overlay {
    keys: BTreeMap<IVec, Option<IVec>>,
}

impl Overlay {
    /// The writes of a squashed group (each key once).
    pub fn of(writes: &Writes) -> Self {
        Self {
            keys: writes
                .ops()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }

    /// `writes` laid over `base`, in order: a key's last write wins.
    pub fn over(base: Option<&Overlay>, writes: &Writes) -> Self {
        let mut keys = base.map(|b| b.keys.clone()).unwrap_or_default();
        for (k, v) in writes.ops() {
            keys.insert(k.clone(), v.clone());
        }
        Self { keys }
    }

    fn between(&self, lo: &[u8], hi: &[u8]) -> Vec<(IVec, Option<IVec>)> {
        self.keys
            .range::<[u8], _>((Bound::Included(lo), Bound::Included(hi)))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn under(&self, prefix: &[u8]) -> Vec<(IVec, Option<IVec>)> {
        self.keys
            .range::<[u8], _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// The tree as it will be once the overlay's writes are in it.
#[derive(Clone, Copy)]
pub(super) struct View<'a> {
    pub tree: &'a sled::Tree,
    pub overlay: Option<&'a Overlay>,
}

impl<'a> View<'a> {
    /// The tree alone.
    pub fn plain(tree: &'a sled::Tree) -> Self {
        View {
            tree,
            overlay: None,
        }
    }
}

impl Read for View<'_> {
    fn get(&self, key: impl AsRef<[u8]>) -> sled::Result<Option<IVec>> {
        match self.overlay.and_then(|o| o.keys.get(key.as_ref())) {
            Some(written) => Ok(written.clone()),
            None => self.tree.get(key),
        }
    }

    fn scan_prefix(&self, prefix: impl AsRef<[u8]>) -> Scan {
        let prefix = prefix.as_ref();
        let over = self.overlay.map(|o| o.under(prefix)).unwrap_or_default();
        Scan::new(self.tree.scan_prefix(prefix), over)
    }

    fn scan_range(&self, lo: &[u8], hi: &[u8]) -> Scan {
        let over = self.overlay.map(|o| o.between(lo, hi)).unwrap_or_default();
        Scan::new(self.tree.range(lo..=hi), over)
    }
}

/// A prefix scan of the tree merged with the overlay's writes under the same prefix (sorted):
/// where both have a key the overlay's write wins, and a removal drops it. Either end may be
/// taken first, as with sled's own iterator.
pub(super) struct Scan {
    tree: sled::Iter,
    /// The next item of the tree from the front and from the back, once looked at.
    front: Option<Item>,
    back: Option<Item>,
    over: Vec<(IVec, Option<IVec>)>,
    /// The overlay's items not yet taken: `over[lo..hi]`.
    lo: usize,
    hi: usize,
}

impl Scan {
    fn new(tree: sled::Iter, over: Vec<(IVec, Option<IVec>)>) -> Self {
        let hi = over.len();
        Scan {
            tree,
            front: None,
            back: None,
            over,
            lo: 0,
            hi,
        }
    }

    /// The keys alone, as `sled::Iter::keys`.
    pub fn keys(self) -> impl DoubleEndedIterator<Item = sled::Result<IVec>> {
        self.map(|kv| kv.map(|(k, _)| k))
    }

    /// The tree's next item from the front; the back's once sled has no more.
    fn peek_front(&mut self) -> Option<&Item> {
        if self.front.is_none() {
            self.front = self.tree.next().or_else(|| self.back.take());
        }
        self.front.as_ref()
    }

    fn peek_back(&mut self) -> Option<&Item> {
        if self.back.is_none() {
            self.back = self.tree.next_back().or_else(|| self.front.take());
        }
        self.back.as_ref()
    }
}

impl Iterator for Scan {
    type Item = Item;

    fn next(&mut self) -> Option<Item> {
        loop {
            let over = (self.lo < self.hi).then(|| self.over[self.lo].0.clone());
            let tree = match self.peek_front() {
                Some(Ok((k, _))) => Some(k.clone()),
                Some(Err(_)) => return self.front.take(),
                None => None,
            };
            match (tree, over) {
                (None, None) => return None,
                (Some(t), Some(o)) if t < o => return self.front.take(),
                (Some(_), None) => return self.front.take(),
                (t, Some(o)) => {
                    if t.as_ref() == Some(&o) {
                        self.front = None;
                    }
                    self.lo += 1;
                    if let (k, Some(v)) = &self.over[self.lo - 1] {
                        return Some(Ok((k.clone(), v.clone())));
                    }
                }
            }
        }
    }
}

impl DoubleEndedIterator for Scan {
    fn next_back(&mut self) -> Option<Item> {
        loop {
            let over = (self.lo < self.hi).then(|| self.over[self.hi - 1].0.clone());
            let tree = match self.peek_back() {
                Some(Ok((k, _))) => Some(k.clone()),
                Some(Err(_)) => return self.back.take(),
                None => None,
            };
            match (tree, over) {
                (None, None) => return None,
                (Some(t), Some(o)) if t > o => return self.back.take(),
                (Some(_), None) => return self.back.take(),
                (t, Some(o)) => {
                    if t.as_ref() == Some(&o) {
                        self.back = None;
                    }
                    self.hi -= 1;
                    if let (k, Some(v)) = &self.over[self.hi] {
                        return Some(Ok((k.clone(), v.clone())));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(scan: impl Iterator<Item = Item>) -> Vec<String> {
        scan.map(|kv| String::from_utf8(kv.unwrap().0.to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn a_view_reads_the_tree_as_the_overlays_writes_will_leave_it() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let tree = db.open_tree("t").unwrap();
        for k in ["a1", "a3", "a5", "a7", "b1"] {
            tree.insert(k, k).unwrap();
        }
        let mut w = Writes::default();
        w.insert(&b"a0"[..], &b"new"[..]);
        w.remove(&b"a3"[..]);
        w.insert(&b"a5"[..], &b"changed"[..]);
        w.insert(&b"a6"[..], &b"new"[..]);
        w.remove(&b"a9"[..]); // not in the tree: nothing to hide
        w.insert(&b"a8"[..], &b"new"[..]);
        let overlay = Overlay::of(&w);
        let view = View {
            tree: &tree,
            overlay: Some(&overlay),
        };
        let all = ["a0", "a1", "a5", "a6", "a7", "a8"];
        assert_eq!(keys(view.scan_prefix(b"a")), all);
        let mut rev = all.to_vec();
        rev.reverse();
        assert_eq!(keys(view.scan_prefix(b"a").rev()), rev);
        assert_eq!(view.get(b"a5").unwrap().unwrap(), &b"changed"[..]);
        assert_eq!(view.get(b"a3").unwrap(), None);
        assert_eq!(view.get(b"a1").unwrap().unwrap(), &b"a1"[..]);
        assert_eq!(view.get(b"a9").unwrap(), None);
        // Both ends at once meet in the middle and take every key once, whichever runs out
        // first (here the tree's front item is the back's last).
        for fronts in 0..=all.len() {
            let mut scan = view.scan_prefix(b"a");
            let mut seen: Vec<String> = keys(scan.by_ref().take(fronts));
            let mut back = keys(scan.rev());
            back.reverse();
            seen.extend(back);
            assert_eq!(seen, all, "{fronts} from the front first");
        }
        // Alternating ends.
        let mut scan = view.scan_prefix(b"a");
        let mut front = Vec::new();
        let mut back = Vec::new();
        loop {
            match scan.next() {
                Some(kv) => front.push(kv.unwrap().0),
                None => break,
            }
            match scan.next_back() {
                Some(kv) => back.push(kv.unwrap().0),
                None => break,
            }
        }
        back.reverse();
        front.extend(back);
        let front: Vec<&[u8]> = front.iter().map(|k| &k[..]).collect();
        assert_eq!(front, all.map(str::as_bytes));
        // Without an overlay a view is the tree.
        let plain = View {
            tree: &tree,
            overlay: None,
        };
        assert_eq!(
            keys(plain.scan_prefix(b"a")),
            ["a1", "a3", "a5", "a7"].map(String::from)
        );
        assert_eq!(keys(Read::scan_prefix(&tree, b"b")), ["b1"]);
    }
}
