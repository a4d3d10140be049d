//! Test data: deterministic pseudo-random bytes (so a failure can be reproduced from its seed)
//! and SHA-256 digests, which is how every test compares what it stored with what it got back.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::Path;

use anyhow::{Context, Result};
use rand::{rngs::StdRng, RngCore, SeedableRng};
use sha2::{Digest, Sha256};

/// `len` pseudo-random bytes derived from `seed`.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    StdRng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}

/// Writes `len` pseudo-random bytes derived from `seed` to `path`, 1 MiB at a time (memory
/// stays flat for the 256 MiB files), and returns their SHA-256 in hex.
pub fn write_random_file(path: &Path, len: u64, seed: u64) -> Result<String> {
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = BufWriter::new(file);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        rng.fill_bytes(&mut buf[..n]);
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])?;
        left -= n as u64;
    }
    out.flush()?;
    Ok(hex::encode(hasher.finalize()))
}

/// SHA-256 (hex) of a file's contents.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// SHA-256 (hex) of a byte slice.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Reads bytes `[start, end)` of a file (for comparing ranged downloads).
pub fn read_range(path: &Path, start: u64, end: u64) -> Result<Vec<u8>> {
    use std::io::{Seek, SeekFrom};
    let mut f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    f.seek(SeekFrom::Start(start))?;
    let mut buf = vec![0u8; (end - start) as usize];
    f.read_exact(&mut buf)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_file_matches_random_bytes_and_its_digest() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let len = (1 << 20) + 17;
        let digest = write_random_file(&p, len as u64, 7).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), random_bytes(len, 7));
        assert_eq!(sha256_file(&p).unwrap(), digest);
        assert_eq!(sha256_hex(&random_bytes(len, 7)), digest);
        assert_eq!(
            read_range(&p, 3, 9).unwrap(),
            random_bytes(len, 7)[3..9].to_vec()
        );
    }
}
