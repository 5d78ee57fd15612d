//! Release binaries on disk: where the arm64 bootstraps are, how big, and whether they are newer than their
//! sources (a stale one is rebuilt by scripts/bench.sh, never silently reported).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// An arm64 bootstrap: `cargo lambda build --release --arm64` output, or `sam build`'s copy of it.
#[derive(Debug, Clone)]
pub struct Arm64 {
    /// Relative to the repository root.
    pub path: PathBuf,
    pub bytes: u64,
    pub fresh: bool,
    pub is_aarch64_elf: bool,
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The newest modification time under `path` (a file or a directory tree).
fn newest(path: &Path) -> Option<SystemTime> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_dir() {
        return meta.modified().ok();
    }
    std::fs::read_dir(path).ok()?.filter_map(Result::ok).filter_map(|entry| newest(&entry.path())).max()
}

/// What a binary is built from: its crate, the library (for functions), the lock file and the profile.
fn sources(root: &Path, binary: &str) -> Vec<PathBuf> {
    let own = match binary {
        "echo-lambda" => vec![root.join("bench/echo")],
        function => {
            vec![root.join("functions").join(function), root.join("shared/src"), root.join("shared/Cargo.toml")]
        }
    };
    own.into_iter().chain([root.join("Cargo.toml"), root.join("Cargo.lock")]).collect()
}

fn sources_mtime(root: &Path, binary: &str) -> Option<SystemTime> {
    sources(root, binary).iter().filter_map(|p| newest(p)).max()
}

/// `purchase-credits` → `PurchaseCreditsFunction`, the template's logical id (and `sam build`'s folder).
fn sam_logical_id(binary: &str) -> String {
    let camel: String = binary
        .split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        })
        .collect();
    format!("{camel}Function")
}

fn is_aarch64_elf(path: &Path) -> bool {
    use std::io::Read;
    let mut header = [0u8; 20];
    let read = std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut header));
    // ELF magic, 64-bit, little-endian, e_machine 183 (AArch64).
    read.is_ok()
        && &header[..4] == b"\x7fELF"
        && header[4] == 2
        && header[5] == 1
        && u16::from_le_bytes([header[18], header[19]]) == 183
}

/// The newest arm64 bootstrap of `binary`, wherever it was built.
pub fn arm64(root: &Path, binary: &str) -> Option<Arm64> {
    let candidates = [
        PathBuf::from("target/lambda").join(binary).join("bootstrap"),
        PathBuf::from(".aws-sam/build").join(sam_logical_id(binary)).join("bootstrap"),
    ];
    let (path, built) =
        candidates.into_iter().filter_map(|p| mtime(&root.join(&p)).map(|t| (p, t))).max_by_key(|(_, t)| *t)?;
    let full = root.join(&path);
    let fresh = sources_mtime(root, binary).is_none_or(|src| built >= src);
    Some(Arm64 {
        bytes: std::fs::metadata(&full).map(|m| m.len()).unwrap_or(0),
        is_aarch64_elf: is_aarch64_elf(&full),
        fresh,
        path,
    })
}

/// Binaries whose arm64 bootstrap is missing, older than its sources, or not an arm64 ELF.
pub fn stale_arm64<'a>(root: &Path, binaries: &[&'a str]) -> Vec<&'a str> {
    binaries.iter().copied().filter(|b| arm64(root, b).is_none_or(|a| !a.fresh || !a.is_aarch64_elf)).collect()
}

/// The size of a host (x86_64) release binary, if built.
pub fn host_size(bin_dir: &Path, binary: &str) -> Option<u64> {
    std::fs::metadata(bin_dir.join(binary)).ok().map(|m| m.len())
}

#[cfg(test)]
mod tests {
    #[test]
    fn logical_ids() {
        assert_eq!(super::sam_logical_id("purchase-credits"), "PurchaseCreditsFunction");
        assert_eq!(super::sam_logical_id("get-pricing"), "GetPricingFunction");
    }
}
