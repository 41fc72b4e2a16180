//! The table of literal host rules: exact, suffix, strict-suffix and domain
//! literals in one hash table, looked up for every suffix of a host.
//!
//! A lookup walks the host from its last byte, extending a hash of the
//! suffix read so far by one byte per step, so every suffix costs O(1) to
//! hash. A small Bloom filter in front of the table skips almost every
//! suffix that no rule has, and a hit is confirmed by comparing the bytes,
//! so a hash collision never decides a verdict.

use hashbrown::HashTable;

use crate::matcher::min_option;
use crate::pattern::Anchor;

/// Bloom filter bits per key. Two bits are set per key in one 64-bit word,
/// which gives an estimated false positive rate of 1 to 2 percent.
const BLOOM_BITS_PER_KEY: usize = 16;

/// The kinds of literal, by where the literal must sit in the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Kind {
    /// The host equals the literal.
    Exact = 0,
    /// The host ends with the literal.
    Suffix = 1,
    /// The host ends with the literal and is longer than it.
    StrictSuffix = 2,
    /// The host equals the literal or ends with a dot and the literal.
    Domain = 3,
}

impl Kind {
    fn from_anchor(anchor: Anchor) -> Option<Kind> {
        match anchor {
            Anchor::Exact => Some(Kind::Exact),
            Anchor::Suffix => Some(Kind::Suffix),
            Anchor::StrictSuffix => Some(Kind::StrictSuffix),
            Anchor::Domain => Some(Kind::Domain),
            Anchor::Contains => None,
        }
    }
}

/// One stored literal: its bytes in [`LiteralTable::bytes`], its kind and
/// the lowest rule number that has it. Literals are at most 255 bytes,
/// since longer ones can never match a host of at most 253.
#[derive(Debug, Clone, Copy)]
struct Slot {
    start: u32,
    rule: u32,
    len: u8,
    kind: Kind,
}

/// Collects literals before the table is built.
#[derive(Debug, Default)]
pub(crate) struct LiteralTableBuilder {
    bytes: Vec<u8>,
    slots: Vec<Slot>,
}

impl LiteralTableBuilder {
    /// Adds a literal with its anchor; contains literals are not served here.
    pub(crate) fn add(&mut self, anchor: Anchor, literal: &str, rule: u32) {
        let Some(kind) = Kind::from_anchor(anchor) else {
            return;
        };
        let Ok(len) = u8::try_from(literal.len()) else {
            return;
        };
        let start = self.bytes.len() as u32;
        self.bytes.extend_from_slice(literal.as_bytes());
        self.slots.push(Slot {
            start,
            rule,
            len,
            kind,
        });
    }

    /// Rules that added at least one literal.
    pub(crate) fn rules(&self) -> impl Iterator<Item = u32> + '_ {
        self.slots.iter().map(|slot| slot.rule)
    }

    /// Builds the table. A literal added by several rules keeps the lowest
    /// rule number.
    ///
    /// # Errors
    ///
    /// Fails when the literals hold more than 4 GiB of text.
    pub(crate) fn build(self) -> Result<LiteralTable, String> {
        if u32::try_from(self.bytes.len()).is_err() {
            return Err("the literal rules hold more than 4 GiB of text; split the lists".into());
        }
        let bloom_words = (self.slots.len() * BLOOM_BITS_PER_KEY / 64)
            .max(1)
            .next_power_of_two();
        let mut table = LiteralTable {
            bytes: Vec::new(),
            slots: Vec::with_capacity(self.slots.len()),
            index: HashTable::with_capacity(self.slots.len()),
            bloom: vec![0; bloom_words],
            lengths: [[0; 4]; 4],
        };
        for slot in &self.slots {
            let literal = slice(&self.bytes, slot);
            let hash = kind_hash(mix(suffix_hash(literal)), slot.kind);
            let length = literal.len();
            table.lengths[slot.kind as usize][length / 64] |= 1 << (length % 64);
            table.bloom_insert(hash);
            let (bytes, unique) = (&self.bytes, &table.slots);
            let entry = table.index.entry(
                hash,
                |&i| {
                    unique[i as usize].kind == slot.kind
                        && slice(bytes, &unique[i as usize]) == literal
                },
                |&i| {
                    let found = &unique[i as usize];
                    kind_hash(mix(suffix_hash(slice(bytes, found))), found.kind)
                },
            );
            match entry {
                hashbrown::hash_table::Entry::Occupied(found) => {
                    let found = &mut table.slots[*found.get() as usize];
                    found.rule = found.rule.min(slot.rule);
                }
                hashbrown::hash_table::Entry::Vacant(vacant) => {
                    vacant.insert(table.slots.len() as u32);
                    table.slots.push(*slot);
                }
            }
        }
        table.slots.shrink_to_fit();
        table.bytes = self.bytes;
        Ok(table)
    }
}

/// The built table.
#[derive(Debug, Default)]
pub(crate) struct LiteralTable {
    bytes: Vec<u8>,
    /// Unique literals; the index refers to them by position, which keeps
    /// the hash table at 4 bytes a bucket.
    slots: Vec<Slot>,
    index: HashTable<u32>,
    bloom: Vec<u64>,
    /// Per kind, a bit for every literal length that occurs (literals are
    /// at most 255 bytes), so impossible suffix lengths cost no probe.
    lengths: [[u64; 4]; 4],
}

impl LiteralTable {
    /// Returns the lowest rule number whose literal matches `host`.
    pub(crate) fn first_match(&self, host: &[u8]) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        let len = host.len();
        let empty = mix(suffix_hash(b""));
        let mut best = self.probe(Kind::Suffix, empty, host, len);
        if len == 0 {
            best = min_option(best, self.probe(Kind::Exact, empty, host, 0));
            return min_option(best, self.probe(Kind::Domain, empty, host, 0));
        }
        best = min_option(best, self.probe(Kind::StrictSuffix, empty, host, len));

        // `hash` covers host[start..] after each step.
        let mut hash = suffix_hash(b"");
        for start in (0..len).rev() {
            hash = hash_step(hash, host[start]);
            let length = len - start;
            let at_start = start == 0;
            let label_start = at_start || host[start - 1] == b'.';
            let mut kinds = [None; 3];
            if self.has_length(Kind::Suffix, length) {
                kinds[0] = Some(Kind::Suffix);
            }
            if at_start && self.has_length(Kind::Exact, length) {
                kinds[1] = Some(Kind::Exact);
            } else if !at_start && self.has_length(Kind::StrictSuffix, length) {
                kinds[1] = Some(Kind::StrictSuffix);
            }
            if label_start && self.has_length(Kind::Domain, length) {
                kinds[2] = Some(Kind::Domain);
            }
            if kinds == [None; 3] {
                continue;
            }
            let mixed = mix(hash);
            for kind in kinds.into_iter().flatten() {
                best = min_option(best, self.probe(kind, mixed, host, start));
            }
        }
        best
    }

    /// Rules that own a stored literal.
    pub(crate) fn rules(&self) -> impl Iterator<Item = u32> + '_ {
        self.slots.iter().map(|slot| slot.rule)
    }

    /// Heap bytes held by the table (key text, slots and Bloom filter).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.bytes.capacity()
            + self.slots.capacity() * std::mem::size_of::<Slot>()
            + self.index.capacity() * (std::mem::size_of::<u32>() + 1)
            + self.bloom.len() * 8
    }

    fn has_length(&self, kind: Kind, length: usize) -> bool {
        length < 256 && self.lengths[kind as usize][length / 64] & (1 << (length % 64)) != 0
    }

    /// Looks up `host[start..]`, whose mixed suffix hash is `mixed`, as a
    /// literal of `kind`.
    fn probe(&self, kind: Kind, mixed: u64, host: &[u8], start: usize) -> Option<u32> {
        if !self.has_length(kind, host.len() - start) {
            return None;
        }
        let hash = kind_hash(mixed, kind);
        if !self.bloom_contains(hash) {
            return None;
        }
        let suffix = &host[start..];
        self.index
            .find(hash, |&i| {
                let slot = &self.slots[i as usize];
                slot.kind == kind && slice(&self.bytes, slot) == suffix
            })
            .map(|&i| self.slots[i as usize].rule)
    }

    fn bloom_bits(&self, hash: u64) -> (usize, u64) {
        let word = ((hash >> 32) as usize) & (self.bloom.len() - 1);
        let bits = (1u64 << (hash & 63)) | (1u64 << ((hash >> 6) & 63));
        (word, bits)
    }

    fn bloom_insert(&mut self, hash: u64) {
        let (word, bits) = self.bloom_bits(hash);
        self.bloom[word] |= bits;
    }

    fn bloom_contains(&self, hash: u64) -> bool {
        let (word, bits) = self.bloom_bits(hash);
        self.bloom[word] & bits == bits
    }
}

fn slice<'a>(bytes: &'a [u8], slot: &Slot) -> &'a [u8] {
    let start = slot.start as usize;
    &bytes[start..start + usize::from(slot.len)]
}

/// FNV-1a over the bytes from last to first, so that extending a suffix by
/// one byte on the left is one [`hash_step`].
fn suffix_hash(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .rev()
        .fold(0xcbf2_9ce4_8422_2325, |hash, &b| hash_step(hash, b))
}

fn hash_step(hash: u64, byte: u8) -> u64 {
    (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
}

/// Spreads the bits (the splitmix64 finalizer), since the table and the
/// Bloom filter use both the high and the low bits.
fn mix(hash: u64) -> u64 {
    let mut z = hash;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Gives each kind its own hash of the same suffix, so the kinds do not
/// share Bloom filter bits.
fn kind_hash(mixed: u64, kind: Kind) -> u64 {
    const SALTS: [u64; 4] = [
        0,
        0x9e37_79b9_7f4a_7c15,
        0xc2b2_ae3d_27d4_eb4f,
        0x1656_67b1_9e37_79f9,
    ];
    mixed ^ SALTS[kind as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffix_hash_extends_one_byte_at_a_time() {
        let host = b"www.example.com";
        let mut hash = suffix_hash(b"");
        for start in (0..host.len()).rev() {
            hash = hash_step(hash, host[start]);
            assert_eq!(hash, suffix_hash(&host[start..]));
        }
    }

    #[test]
    fn kinds_index_the_presence_flags() {
        let kinds = [Kind::Exact, Kind::Suffix, Kind::StrictSuffix, Kind::Domain];
        for (index, kind) in kinds.iter().enumerate() {
            assert_eq!(*kind as usize, index);
        }
    }
}
