//! Shared by the ext4 fuzz targets: build an image from layer bytes; when the build succeeds,
//! our own reader must walk the whole tree (every directory listed, every file read to its
//! recorded size), and the image must pass `e2fsck -fn`: every image by default, every Nth
//! with `EXT4_FUZZ_FSCK_EVERY=N`. e2fsck is a process per image (tens of executions a
//! second); the walk in process lets a long run reach millions, with e2fsck sampling them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

static BUILT: AtomicU64 = AtomicU64::new(0);

pub fn build_and_check(layers: &[Vec<u8>]) {
    let dir = std::env::temp_dir().join(format!("ext4-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("fuzz dir");
    let paths: Vec<PathBuf> = layers
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let p = dir.join(format!("layer{i}"));
            std::fs::write(&p, l).expect("write layer");
            p
        })
        .collect();
    let image = dir.join("img");
    let _ = std::fs::remove_file(&image);
    let built = ext4::build_from_layers(&paths, &image, &ext4::FormatOptions::default());
    if built.is_ok() {
        if let Err(e) = walk(&image) {
            reject(&image, &format!("our reader cannot walk an image we wrote: {e}"));
        }
        let every: u64 = std::env::var("EXT4_FUZZ_FSCK_EVERY")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1)
            .max(1);
        if BUILT.fetch_add(1, Ordering::Relaxed) % every == 0 {
            let out = Command::new("e2fsck")
                .arg("-fn")
                .arg(&image)
                .output()
                .expect("run e2fsck");
            if out.status.code() != Some(0) {
                reject(
                    &image,
                    &format!(
                        "e2fsck rejected an image we wrote:\n{}",
                        String::from_utf8_lossy(&out.stdout)
                    ),
                );
            }
        }
    }
    let _ = std::fs::remove_file(&image);
}

/// Keeps the image for a look and fails the execution.
fn reject(image: &Path, why: &str) -> ! {
    let keep = std::env::temp_dir().join("ext4-fuzz-rejected.img");
    let _ = std::fs::copy(image, &keep);
    panic!("{why} (image kept at {})", keep.display());
}

/// Lists every directory from the root and reads every regular file, checking what is read
/// against the inode's size.
fn walk(image: &Path) -> Result<(), String> {
    let r = ext4::reader::Reader::open(image).map_err(|e| e.to_string())?;
    let mut todo = vec![2u32];
    let mut seen = std::collections::HashSet::new();
    while let Some(ino) = todo.pop() {
        if !seen.insert(ino) {
            continue;
        }
        for (name, child) in r.list_ino(ino).map_err(|e| format!("list inode {ino}: {e}"))? {
            if name == b"." || name == b".." {
                continue;
            }
            let st = r
                .stat_ino(child)
                .map_err(|e| format!("stat inode {child}: {e}"))?;
            match st.kind {
                ext4::reader::FileKind::Dir => todo.push(child),
                ext4::reader::FileKind::File => {
                    let data = r
                        .read_ino(child)
                        .map_err(|e| format!("read inode {child}: {e}"))?;
                    if data.len() as u64 != st.size {
                        return Err(format!(
                            "inode {child}: read {} bytes of {}",
                            data.len(),
                            st.size
                        ));
                    }
                }
                _ => {}
            }
        }
    }
    Ok(())
}
