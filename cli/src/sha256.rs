//! SHA-256 (FIPS 180-4), for the checksums of `blksnap backup`.
//!
//! `backup` writes the SHA-256 of every backup file next to it, in the
//! format `sha256sum` reads (`HEX  NAME`), and `verify --checksum` checks a
//! file against it. [`Sha256`] hashes a stream fed in pieces of any size;
//! [`sha256_reader`] hashes everything a reader gives. The tests compare it
//! with the standard's test vectors.

use std::io::{self, Read};

/// Length of a digest in bytes.
pub const DIGEST_LEN: usize = 32;

/// Bytes in one block of the compression function.
const BLOCK: usize = 64;

/// First 32 bits of the fractional parts of the cube roots of the first 64
/// primes.
const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

/// First 32 bits of the fractional parts of the square roots of the first 8
/// primes: the initial hash value.
const H0: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// A SHA-256 computation in progress.
#[derive(Clone)]
pub struct Sha256 {
    state: [u32; 8],
    /// Bytes of a block not complete yet; `pending` of them are valid.
    block: [u8; BLOCK],
    pending: usize,
    /// Bytes hashed so far.
    length: u64,
}

impl Default for Sha256 {
    fn default() -> Self {
        Self::new()
    }
}

impl Sha256 {
    /// Returns the computation over no bytes yet.
    pub fn new() -> Self {
        Self {
            state: H0,
            block: [0; BLOCK],
            pending: 0,
            length: 0,
        }
    }

    /// Hashes `data`, after what was hashed before.
    pub fn update(&mut self, mut data: &[u8]) {
        self.length = self.length.wrapping_add(data.len() as u64);
        if self.pending > 0 {
            let take = (BLOCK - self.pending).min(data.len());
            self.block[self.pending..self.pending + take].copy_from_slice(&data[..take]);
            self.pending += take;
            data = &data[take..];
            if self.pending < BLOCK {
                return;
            }
            let block = self.block;
            compress(&mut self.state, &block);
            self.pending = 0;
        }
        while let Some((block, rest)) = data.split_first_chunk::<BLOCK>() {
            compress(&mut self.state, block);
            data = rest;
        }
        let rest = data;
        self.block[..rest.len()].copy_from_slice(rest);
        self.pending = rest.len();
    }

    /// Returns the digest of everything hashed.
    pub fn finish(mut self) -> [u8; DIGEST_LEN] {
        let bits = self.length.wrapping_mul(8);
        // A 1 bit, zeroes up to 8 bytes before a block's end, the length.
        let mut pad = [0u8; 2 * BLOCK];
        pad[0] = 0x80;
        let used = self.pending + 1;
        let zeroes = if used <= BLOCK - 8 {
            BLOCK - 8 - used
        } else {
            2 * BLOCK - 8 - used
        };
        let end = 1 + zeroes;
        pad[end..end + 8].copy_from_slice(&bits.to_be_bytes());
        let length = self.length;
        self.update(&pad[..end + 8]);
        self.length = length;
        let mut out = [0u8; DIGEST_LEN];
        for (word, bytes) in self.state.iter().zip(out.chunks_exact_mut(4)) {
            bytes.copy_from_slice(&word.to_be_bytes());
        }
        out
    }
}

/// Runs the compression function of one block over `state`.
///
/// Written with index loops and plain locals rather than iterators: the
/// in-VM tests run the debug build, where every iterator step is a call.
fn compress(state: &mut [u32; 8], block: &[u8; BLOCK]) {
    let mut w = [0u32; 64];
    let mut i = 0;
    while i < 16 {
        let j = 4 * i;
        w[i] = u32::from(block[j]) << 24
            | u32::from(block[j + 1]) << 16
            | u32::from(block[j + 2]) << 8
            | u32::from(block[j + 3]);
        i += 1;
    }
    while i < 64 {
        let x = w[i - 15];
        let y = w[i - 2];
        let s0 = x.rotate_right(7) ^ x.rotate_right(18) ^ (x >> 3);
        let s1 = y.rotate_right(17) ^ y.rotate_right(19) ^ (y >> 10);
        w[i] = w[i - 16]
            .wrapping_add(s0)
            .wrapping_add(w[i - 7])
            .wrapping_add(s1);
        i += 1;
    }
    let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = *state;
    i = 0;
    while i < 64 {
        let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
        let ch = (e & f) ^ (!e & g);
        let t1 = h
            .wrapping_add(s1)
            .wrapping_add(ch)
            .wrapping_add(K[i])
            .wrapping_add(w[i]);
        let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
        let maj = (a & b) ^ (a & c) ^ (b & c);
        let t2 = s0.wrapping_add(maj);
        h = g;
        g = f;
        f = e;
        e = d.wrapping_add(t1);
        d = c;
        c = b;
        b = a;
        a = t1.wrapping_add(t2);
        i += 1;
    }
    state[0] = state[0].wrapping_add(a);
    state[1] = state[1].wrapping_add(b);
    state[2] = state[2].wrapping_add(c);
    state[3] = state[3].wrapping_add(d);
    state[4] = state[4].wrapping_add(e);
    state[5] = state[5].wrapping_add(f);
    state[6] = state[6].wrapping_add(g);
    state[7] = state[7].wrapping_add(h);
}

/// Returns `digest` in lowercase hexadecimal, as `sha256sum` prints it.
pub fn to_hex(digest: &[u8; DIGEST_LEN]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Returns the SHA-256 of everything `reader` gives, read in pieces of
/// 1 MiB; `progress` is told the bytes of each piece.
pub fn sha256_reader(
    reader: &mut impl Read,
    progress: &mut dyn FnMut(u64),
) -> io::Result<[u8; DIGEST_LEN]> {
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(hash.finish()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hash.update(&buf[..n]);
        progress(n as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(data: &[u8]) -> String {
        let mut h = Sha256::new();
        h.update(data);
        to_hex(&h.finish())
    }

    #[test]
    fn standard_vectors() {
        assert_eq!(
            hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hex(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
        assert_eq!(
            hex(b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu"),
            "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"
        );
        assert_eq!(
            hex(&vec![b'a'; 1_000_000]),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
        );
    }

    #[test]
    fn padding_lengths_around_a_block() {
        // 55 bytes pad within the block, 56..=63 need a second one.
        assert_eq!(
            hex(&[0u8; 55]),
            "02779466cdec163811d078815c633f21901413081449002f24aa3e80f0b88ef7"
        );
        assert_eq!(
            hex(&[0u8; 56]),
            "d4817aa5497628e7c77e6b606107042bbba3130888c5f47a375e6179be789fbb"
        );
        assert_eq!(
            hex(&[0u8; 64]),
            "f5a5fd42d16a20302798ef6ed309979b43003d2320d9f0e8ea9831a92759fb4b"
        );
    }

    #[test]
    fn reader_matches_update() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        let mut seen = 0;
        let digest = sha256_reader(&mut &data[..], &mut |n| seen += n).unwrap();
        assert_eq!(seen, data.len() as u64);
        assert_eq!(to_hex(&digest), hex(&data));
    }

    proptest! {
        #[test]
        fn pieces_do_not_matter(data in proptest::collection::vec(any::<u8>(), 0..600),
                                cuts in proptest::collection::vec(0usize..600, 0..8)) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
            cuts.sort_unstable();
            let mut h = Sha256::new();
            let mut at = 0;
            for c in cuts {
                h.update(&data[at..c]);
                at = c;
            }
            h.update(&data[at..]);
            prop_assert_eq!(to_hex(&h.finish()), hex(&data));
        }
    }
}
