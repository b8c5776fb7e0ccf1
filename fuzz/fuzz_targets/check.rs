//! Shared by the fuzz targets: build an image from layer bytes; when the build succeeds, the
//! image must pass `e2fsck -fn`.

use std::path::PathBuf;
use std::process::Command;

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
        let out = Command::new("e2fsck")
            .arg("-fn")
            .arg(&image)
            .output()
            .expect("run e2fsck");
        if out.status.code() != Some(0) {
            let keep = std::env::temp_dir().join("ext4-fuzz-rejected.img");
            let _ = std::fs::copy(&image, &keep);
            panic!(
                "e2fsck rejected an image we wrote (kept at {}):\n{}",
                keep.display(),
                String::from_utf8_lossy(&out.stdout)
            );
        }
    }
    let _ = std::fs::remove_file(&image);
}
