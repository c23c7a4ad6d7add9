//! The format of a tagged 4 KiB block.
//!
//! A block is 512 little-endian 64-bit words:
//!
//! | word | content |
//! |---|---|
//! | 0 | magic: [`TAG_MAGIC`] (written by `tagblk write`) or [`SEQ_MAGIC`] (`tagblk seq`) |
//! | 1 | the block's own byte offset on the device |
//! | 2 | the generation (`write`) or the sequence number (`seq`) |
//! | 3 | zero |
//! | 4..511 | filler: a splitmix64 stream seeded from magic, offset and generation |
//! | 511 | checksum of words 0..511 |
//!
//! So a block read back tells where it was meant to be and which generation
//! wrote it, and any change to it (a torn write, a block from elsewhere,
//! zeroes, random data) is seen: [`matches`] compares a block with the exact
//! content it should have, [`decode`] says what a block that does not match
//! holds.

/// Size of a tagged block, and the unit of every offset and length.
pub const BLOCK_SIZE: usize = 4096;

const WORDS: usize = BLOCK_SIZE / 8;
const FILLER_START: usize = 4;
const CHECKSUM_WORD: usize = WORDS - 1;

/// Magic of the blocks that `tagblk write` writes.
pub const TAG_MAGIC: u64 = u64::from_le_bytes(*b"TAGBLK01");
/// Magic of the records that `tagblk seq` writes.
pub const SEQ_MAGIC: u64 = u64::from_le_bytes(*b"TAGSEQ01");

const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// The splitmix64 finaliser: a bijective 64-bit mix.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The filler stream of one block: word `i` of the stream is filler word
/// `FILLER_START + i` of the block.
struct Filler(u64);

impl Filler {
    fn new(magic: u64, offset: u64, gen: u64) -> Self {
        Self(mix64(magic ^ mix64(offset ^ mix64(gen))))
    }

    fn next_word(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN);
        mix64(self.0)
    }
}

/// A running checksum over the words of a block.
struct Checksum(u64);

impl Checksum {
    fn new() -> Self {
        Self(0x6a09_e667_f3bc_c908)
    }

    fn add(&mut self, word: u64) {
        self.0 = (self.0 ^ word)
            .wrapping_mul(0x0000_0100_0000_01b3)
            .rotate_left(23);
    }

    fn finish(&self) -> u64 {
        mix64(self.0)
    }
}

fn word(block: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&block[i * 8..i * 8 + 8]);
    u64::from_le_bytes(w)
}

/// The header words of a block, in order.
fn header(magic: u64, offset: u64, gen: u64) -> [u64; FILLER_START] {
    [magic, offset, gen, 0]
}

/// Writes the block of kind `magic` for `offset` and `gen` into `block`.
///
/// # Panics
///
/// If `block` is not exactly [`BLOCK_SIZE`] bytes long.
pub fn fill(block: &mut [u8], magic: u64, offset: u64, gen: u64) {
    assert_eq!(
        block.len(),
        BLOCK_SIZE,
        "a tagged block is {BLOCK_SIZE} bytes"
    );
    let mut filler = Filler::new(magic, offset, gen);
    let mut sum = Checksum::new();
    let hdr = header(magic, offset, gen);
    for (i, out) in block.chunks_exact_mut(8).enumerate() {
        let w = match i {
            CHECKSUM_WORD => sum.finish(),
            i if i < FILLER_START => hdr[i],
            _ => filler.next_word(),
        };
        sum.add(w);
        out.copy_from_slice(&w.to_le_bytes());
    }
}

/// Whether `block` is exactly the block of kind `magic` for `offset` and
/// `gen`, byte for byte.
pub fn matches(block: &[u8], magic: u64, offset: u64, gen: u64) -> bool {
    if block.len() != BLOCK_SIZE {
        return false;
    }
    let hdr = header(magic, offset, gen);
    if (0..FILLER_START).any(|i| word(block, i) != hdr[i]) {
        return false;
    }
    let mut filler = Filler::new(magic, offset, gen);
    let mut sum = Checksum::new();
    hdr.iter().for_each(|&w| sum.add(w));
    for i in FILLER_START..CHECKSUM_WORD {
        let w = filler.next_word();
        if word(block, i) != w {
            return false;
        }
        sum.add(w);
    }
    word(block, CHECKSUM_WORD) == sum.finish()
}

/// What a block read from a device holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Content {
    /// A well-formed block of kind `magic`, written for `offset` by
    /// generation (or sequence number) `gen`.
    Tagged {
        /// [`TAG_MAGIC`] or [`SEQ_MAGIC`].
        magic: u64,
        /// The offset it was written for.
        offset: u64,
        /// Its generation or sequence number.
        gen: u64,
    },
    /// All zero bytes (never written, or discarded).
    Zero,
    /// Anything else: random data, a torn or corrupted block.
    Garbage,
}

/// Tells what `block` holds.
pub fn decode(block: &[u8]) -> Content {
    if block.len() != BLOCK_SIZE {
        return Content::Garbage;
    }
    let magic = word(block, 0);
    if magic == TAG_MAGIC || magic == SEQ_MAGIC {
        let (offset, gen) = (word(block, 1), word(block, 2));
        if matches(block, magic, offset, gen) {
            return Content::Tagged { magic, offset, gen };
        }
        return Content::Garbage;
    }
    if block.iter().all(|&b| b == 0) {
        Content::Zero
    } else {
        Content::Garbage
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(magic: u64, offset: u64, gen: u64) -> Vec<u8> {
        let mut b = vec![0u8; BLOCK_SIZE];
        fill(&mut b, magic, offset, gen);
        b
    }

    #[test]
    fn a_filled_block_matches_and_decodes_to_its_tag() {
        let b = block(TAG_MAGIC, 8192, 7);
        assert!(matches(&b, TAG_MAGIC, 8192, 7));
        assert_eq!(
            decode(&b),
            Content::Tagged {
                magic: TAG_MAGIC,
                offset: 8192,
                gen: 7
            }
        );
        assert_eq!(&b[..8], b"TAGBLK01");
    }

    #[test]
    fn other_offset_generation_or_kind_do_not_match() {
        let b = block(TAG_MAGIC, 8192, 7);
        assert!(!matches(&b, TAG_MAGIC, 4096, 7));
        assert!(!matches(&b, TAG_MAGIC, 8192, 8));
        assert!(!matches(&b, SEQ_MAGIC, 8192, 7));
        assert!(!matches(&b[..4095], TAG_MAGIC, 8192, 7));
    }

    #[test]
    fn the_filler_differs_between_blocks() {
        let a = block(TAG_MAGIC, 0, 1);
        let b = block(TAG_MAGIC, 4096, 1);
        let c = block(TAG_MAGIC, 0, 2);
        assert_ne!(a[64..4000], b[64..4000]);
        assert_ne!(a[64..4000], c[64..4000]);
    }

    #[test]
    fn any_flipped_bit_is_seen() {
        let good = block(SEQ_MAGIC, 1 << 20, 3);
        for byte in [0, 9, 17, 25, 32, 100, 2048, 4087, 4088, 4095] {
            for bit in [0, 3, 7] {
                let mut b = good.clone();
                b[byte] ^= 1 << bit;
                assert!(!matches(&b, SEQ_MAGIC, 1 << 20, 3), "byte {byte} bit {bit}");
                assert_ne!(
                    decode(&b),
                    Content::Tagged {
                        magic: SEQ_MAGIC,
                        offset: 1 << 20,
                        gen: 3
                    }
                );
            }
        }
    }

    #[test]
    fn zeroes_and_random_data_decode_as_such() {
        assert_eq!(decode(&[0u8; BLOCK_SIZE]), Content::Zero);
        let mut b = vec![0u8; BLOCK_SIZE];
        b[4000] = 1;
        assert_eq!(decode(&b), Content::Garbage);
        // A valid header over the wrong body.
        let mut b = block(TAG_MAGIC, 0, 1);
        b[100..200].fill(0xaa);
        assert_eq!(decode(&b), Content::Garbage);
    }
}
