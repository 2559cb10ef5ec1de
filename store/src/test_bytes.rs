//! Test data shared by the unit tests.

/// Bytes that neither compress nor repeat at any chunk size (xorshift from
/// `seed`, which must not be 0).
pub(crate) fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 24) as u8
        })
        .collect()
}
