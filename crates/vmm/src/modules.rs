//! Picks the kernel modules a VM needs and orders them for loading.
//!
//! Debian's kernel package ships no `modules.dep`, so dependencies come from each module's ELF
//! `.modinfo` section: NUL-separated `key=value` strings, of which `depends=a,b` lists the
//! modules that must be loaded first (kernel `scripts/mod/modpost.c` writes it). Modules the
//! kernel has built in (`modules.builtin`) or that a kernel without modules lacks are skipped:
//! their drivers are already there.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use object::read::elf::ElfFile64;
use object::{Object, ObjectSection};

/// Errors of finding and ordering modules.
#[derive(Debug, thiserror::Error)]
pub enum ModulesError {
    /// The modules directory cannot be listed.
    #[error("cannot list kernel modules in {path}")]
    ListDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A module file cannot be read or decompressed.
    #[error("cannot read kernel module {path}")]
    ReadModule {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A module file is not an ELF object with a `.modinfo` section.
    #[error("{path} is not a kernel module ({what})")]
    BadModule { path: PathBuf, what: String },
    /// A needed module is neither in the modules directory nor built in.
    #[error("kernel module {name} not found in {dir} (needed by {needed_by})")]
    NotFound {
        name: String,
        dir: PathBuf,
        needed_by: String,
    },
    /// The `depends=` lists form a cycle.
    #[error("kernel module dependency cycle through {0}")]
    Cycle(String),
}

/// One module to load, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// Module name with `_` (as the kernel names it).
    pub name: String,
    /// Path of the `.ko`, `.ko.xz` or `.ko.zst` file.
    pub path: PathBuf,
}

/// Devices a VM uses; each implies the drivers [`required`] returns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Features {
    /// Block devices (rootfs and extra disks).
    pub block: bool,
    /// The virtio-serial agent channel.
    pub console: bool,
    /// virtio-net interfaces.
    pub net: bool,
    /// AF_VSOCK over virtio.
    pub vsock: bool,
    /// virtiofs shares.
    pub virtiofs: bool,
    /// The virtio balloon (free page reporting gives freed guest memory back to the host).
    pub balloon: bool,
    /// overlayfs, for the builder's RUN steps (layers stacked in the guest). Not a device,
    /// but a module of Debian's kernel like the drivers; our own kernel has it built in.
    pub overlay: bool,
    /// Loop devices (`/dev/loop-control`), for a pod member's rootfs: ext4 image files in a
    /// virtiofs share, which vminitd mounts with the agent's `loop` mount option because the
    /// microvm machine cannot hot-plug a disk into a running VM. A module of Debian's kernel
    /// (`CONFIG_BLK_DEV_LOOP=m`); our own kernel has it built in. A template boot leaves it
    /// for `Resume` like every module outside `agent::contract::EARLY_MODULES`.
    pub loop_devices: bool,
    /// `/dev/fuse` in a container (`--device /dev/fuse`).
    pub fuse: bool,
    /// `/dev/net/tun` in a container (`--device /dev/net/tun`).
    pub tun: bool,
}

/// The driver modules (without their dependencies) for a set of features. `virtio_mmio`, the
/// transport of every device on the microvm machine, always comes first.
pub fn required(features: Features) -> Vec<&'static str> {
    let mut names = vec!["virtio_mmio"];
    if features.block {
        names.push("virtio_blk");
    }
    if features.console {
        names.push("virtio_console");
    }
    if features.net {
        names.push("virtio_net");
    }
    if features.vsock {
        names.push("vmw_vsock_virtio_transport");
    }
    if features.virtiofs {
        names.push("virtiofs");
    }
    if features.overlay {
        names.push("overlay");
    }
    if features.loop_devices {
        names.push("loop");
    }
    if features.fuse && !features.virtiofs {
        names.push("fuse");
    }
    if features.tun {
        names.push("tun");
    }
    names
}

/// Drivers a VM can do without: the balloon (without it, memory the guest frees stays with
/// QEMU). [`resolve_features`] leaves them out when the kernel lacks them.
pub fn optional(features: Features) -> Vec<&'static str> {
    let mut names = Vec::new();
    if features.balloon {
        names.push("virtio_balloon");
    }
    names
}

/// Normalises a module name as the kernel does (`-` and `_` are the same).
pub fn canonical(name: &str) -> String {
    name.replace('-', "_")
}

/// The modules of one kernel: name → file, and the set of built-in module names.
#[derive(Debug, Default)]
pub struct ModuleIndex {
    dir: PathBuf,
    files: BTreeMap<String, PathBuf>,
    builtin: BTreeSet<String>,
}

impl ModuleIndex {
    /// Indexes `dir` (a `lib/modules/<release>` directory): every `*.ko[.xz|.zst]` below it and
    /// the names listed in `modules.builtin`.
    pub fn open(dir: &Path) -> Result<Self, ModulesError> {
        let mut index = ModuleIndex {
            dir: dir.to_path_buf(),
            ..Default::default()
        };
        index.walk(dir)?;
        if let Ok(text) = fs::read_to_string(dir.join("modules.builtin")) {
            for line in text.lines() {
                if let Some(name) = module_name(Path::new(line.trim())) {
                    index.builtin.insert(name);
                }
            }
        }
        Ok(index)
    }

    fn walk(&mut self, dir: &Path) -> Result<(), ModulesError> {
        let list = |source| ModulesError::ListDir {
            path: dir.to_path_buf(),
            source,
        };
        for entry in fs::read_dir(dir).map_err(list)? {
            let entry = entry.map_err(list)?;
            let path = entry.path();
            let ty = entry.file_type().map_err(list)?;
            if ty.is_dir() {
                self.walk(&path)?;
            } else if let Some(name) = module_name(&path) {
                self.files.entry(name).or_insert(path);
            }
        }
        Ok(())
    }

    /// Whether the kernel has `name` built in.
    pub fn is_builtin(&self, name: &str) -> bool {
        self.builtin.contains(&canonical(name))
    }

    /// The file of module `name`, if the directory has it.
    pub fn file(&self, name: &str) -> Option<&Path> {
        self.files.get(&canonical(name)).map(PathBuf::as_path)
    }

    /// The modules to load for `names`, dependencies first, each once. Built-in modules are
    /// skipped; a module that is neither present nor built in is an error.
    pub fn resolve(&self, names: &[&str]) -> Result<Vec<Module>, ModulesError> {
        let mut order = Vec::new();
        let mut done = BTreeSet::new();
        let mut visiting = BTreeSet::new();
        for name in names {
            self.visit(
                &canonical(name),
                "the VM",
                &mut order,
                &mut done,
                &mut visiting,
            )?;
        }
        Ok(order)
    }

    fn visit(
        &self,
        name: &str,
        needed_by: &str,
        order: &mut Vec<Module>,
        done: &mut BTreeSet<String>,
        visiting: &mut BTreeSet<String>,
    ) -> Result<(), ModulesError> {
        if done.contains(name) {
            return Ok(());
        }
        if !visiting.insert(name.to_string()) {
            return Err(ModulesError::Cycle(name.to_string()));
        }
        match self.files.get(name) {
            Some(path) => {
                for dep in depends(path)? {
                    self.visit(&dep, name, order, done, visiting)?;
                }
                order.push(Module {
                    name: name.to_string(),
                    path: path.clone(),
                });
            }
            None if self.builtin.contains(name) => {}
            None => {
                return Err(ModulesError::NotFound {
                    name: name.to_string(),
                    dir: self.dir.clone(),
                    needed_by: needed_by.to_string(),
                })
            }
        }
        visiting.remove(name);
        done.insert(name.to_string());
        Ok(())
    }
}

/// Resolves `names` against an optional modules directory. A kernel without a modules
/// directory is taken to have every driver built in, so nothing is loaded.
pub fn resolve(modules_dir: Option<&Path>, names: &[&str]) -> Result<Vec<Module>, ModulesError> {
    match modules_dir {
        None => Ok(Vec::new()),
        Some(dir) => ModuleIndex::open(dir)?.resolve(names),
    }
}

/// The modules to load for `features` ([`required`] and [`optional`]), in order, and the
/// optional drivers left out because the kernel has them neither as a module nor built in. A
/// kernel without a modules directory is taken to have every driver built in.
pub fn resolve_features(
    modules_dir: Option<&Path>,
    features: Features,
) -> Result<(Vec<Module>, Vec<&'static str>), ModulesError> {
    let Some(dir) = modules_dir else {
        return Ok((Vec::new(), Vec::new()));
    };
    let index = ModuleIndex::open(dir)?;
    let mut names = required(features);
    let mut missing = Vec::new();
    for name in optional(features) {
        if index.file(name).is_some() || index.is_builtin(name) {
            names.push(name);
        } else {
            missing.push(name);
        }
    }
    Ok((index.resolve(&names)?, missing))
}

/// The module name of a `.ko`, `.ko.xz` or `.ko.zst` path.
fn module_name(path: &Path) -> Option<String> {
    let file = path.file_name()?.to_str()?;
    let stem = file
        .strip_suffix(".ko")
        .or_else(|| file.strip_suffix(".ko.xz"))
        .or_else(|| file.strip_suffix(".ko.zst"))?;
    Some(canonical(stem))
}

/// Reads a module file, decompressing `.ko.xz` and `.ko.zst`, so the guest can `init_module` it.
pub fn read_module(path: &Path) -> Result<Vec<u8>, ModulesError> {
    let err = |source| ModulesError::ReadModule {
        path: path.to_path_buf(),
        source,
    };
    let raw = fs::read(path).map_err(err)?;
    let name = path.to_string_lossy();
    let mut out = Vec::new();
    if name.ends_with(".xz") {
        xz2::read::XzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(err)?;
        Ok(out)
    } else if name.ends_with(".zst") {
        zstd::stream::read::Decoder::new(&raw[..])
            .and_then(|mut d| d.read_to_end(&mut out))
            .map_err(err)?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// The `key=value` strings of a module's `.modinfo` section.
pub fn modinfo(path: &Path) -> Result<Vec<(String, String)>, ModulesError> {
    let data = read_module(path)?;
    parse_modinfo(&data).map_err(|what| ModulesError::BadModule {
        path: path.to_path_buf(),
        what,
    })
}

/// The `key=value` strings of the `.modinfo` section of an (uncompressed) module's bytes;
/// the error says what is wrong with the ELF.
pub fn parse_modinfo(data: &[u8]) -> Result<Vec<(String, String)>, String> {
    let elf = ElfFile64::<object::Endianness>::parse(data).map_err(|e| e.to_string())?;
    let section = elf
        .section_by_name(".modinfo")
        .ok_or_else(|| "no .modinfo section".to_string())?;
    let bytes = section.data().map_err(|e| e.to_string())?;
    Ok(bytes
        .split(|&b| b == 0)
        .filter_map(|kv| {
            let s = std::str::from_utf8(kv).ok()?;
            let (k, v) = s.split_once('=')?;
            Some((k.to_string(), v.to_string()))
        })
        .collect())
}

/// The modules a module depends on (`depends=` of its `.modinfo`).
pub fn depends(path: &Path) -> Result<Vec<String>, ModulesError> {
    Ok(modinfo(path)?
        .into_iter()
        .filter(|(k, _)| k == "depends")
        .flat_map(|(_, v)| {
            v.split(',')
                .filter(|s| !s.is_empty())
                .map(canonical)
                .collect::<Vec<_>>()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(mods: &[Module]) -> Vec<&str> {
        mods.iter().map(|m| m.name.as_str()).collect()
    }

    fn position(mods: &[Module], name: &str) -> usize {
        mods.iter()
            .position(|m| m.name == name)
            .unwrap_or_else(|| panic!("{name} missing from {:?}", names(mods)))
    }

    #[test]
    fn debian_kernel_dependency_order() {
        let k = crate::testutil::debian_kernel();
        let index = ModuleIndex::open(&k.modules).unwrap();
        assert!(index.is_builtin("ext4"));

        let blk = index.resolve(&["virtio_mmio", "virtio_blk"]).unwrap();
        assert_eq!(blk.len(), 4, "{:?}", names(&blk));
        for m in ["virtio", "virtio_ring"] {
            assert!(position(&blk, m) < position(&blk, "virtio_mmio"));
            assert!(position(&blk, m) < position(&blk, "virtio_blk"));
        }

        let net = index.resolve(&["virtio_net"]).unwrap();
        assert!(position(&net, "failover") < position(&net, "net_failover"));
        assert!(position(&net, "net_failover") < position(&net, "virtio_net"));
        assert_eq!(net.last().unwrap().name, "virtio_net");

        let fs = index.resolve(&["virtiofs"]).unwrap();
        assert!(position(&fs, "fuse") < position(&fs, "virtiofs"));
        assert!(position(&fs, "virtio_ring") < position(&fs, "virtiofs"));

        let every = Features {
            block: true,
            console: true,
            net: true,
            vsock: true,
            virtiofs: true,
            balloon: true,
            overlay: true,
            loop_devices: true,
            fuse: true,
            tun: true,
        };
        let (all, missing) = resolve_features(Some(&k.modules), every).unwrap();
        assert!(missing.is_empty(), "{missing:?}");
        let unique: BTreeSet<_> = names(&all).into_iter().collect();
        assert_eq!(unique.len(), all.len(), "each module once");
        assert!(position(&all, "vsock") < position(&all, "vmw_vsock_virtio_transport"));
        assert!(position(&all, "virtio_ring") < position(&all, "virtio_balloon"));
        // overlayfs is a module of Debian's cloud kernel with no dependencies.
        assert_eq!(names(&index.resolve(&["overlay"]).unwrap()), ["overlay"]);
        assert!(names(&all).contains(&"overlay"));
        // So is the loop driver.
        assert_eq!(names(&index.resolve(&["loop"]).unwrap()), ["loop"]);
        assert!(names(&all).contains(&"loop"));
        // `--device /dev/net/tun`'s driver; fuse once although virtiofs needs it too.
        assert!(names(&all).contains(&"tun"));
        assert_eq!(names(&all).iter().filter(|n| **n == "fuse").count(), 1);
        let tun_only = Features {
            tun: true,
            fuse: true,
            ..Default::default()
        };
        let (some, _) = resolve_features(Some(&k.modules), tun_only).unwrap();
        assert!(names(&some).contains(&"tun") && names(&some).contains(&"fuse"));
        // Built in: resolves to nothing, not an error.
        assert!(index.resolve(&["ext4"]).unwrap().is_empty());
        let err = index.resolve(&["no_such_module"]).unwrap_err();
        assert!(err.to_string().contains("no_such_module"), "{err}");
    }

    #[test]
    fn loop_devices_add_the_loop_driver_only_when_asked() {
        assert!(!required(Features::default()).contains(&"loop"));
        let f = Features {
            virtiofs: true,
            loop_devices: true,
            ..Default::default()
        };
        assert_eq!(required(f), ["virtio_mmio", "virtiofs", "loop"]);
        // Our kernel builds it in (config-6.1-container): nothing to load, not an error.
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("modules.builtin"),
            "kernel/drivers/virtio/virtio_mmio.ko\nkernel/drivers/block/loop.ko\n",
        )
        .unwrap();
        let f = Features {
            loop_devices: true,
            ..Default::default()
        };
        assert_eq!(
            resolve_features(Some(dir.path()), f).unwrap(),
            (Vec::new(), Vec::new())
        );
        // A kernel with neither: the required driver is named.
        let empty = tempfile::tempdir().unwrap();
        fs::write(
            empty.path().join("modules.builtin"),
            "kernel/drivers/virtio/virtio_mmio.ko\n",
        )
        .unwrap();
        let err = resolve_features(Some(empty.path()), f).unwrap_err();
        assert!(
            err.to_string().contains("kernel module loop not found"),
            "{err}"
        );
    }

    #[test]
    fn no_modules_dir_means_built_in() {
        assert!(resolve(None, &["virtio_blk"]).unwrap().is_empty());
        let f = Features {
            block: true,
            balloon: true,
            ..Default::default()
        };
        assert_eq!(resolve_features(None, f).unwrap(), (Vec::new(), Vec::new()));
    }

    #[test]
    fn a_kernel_without_the_balloon_driver_boots_without_it() {
        let k = crate::testutil::debian_kernel();
        let index = ModuleIndex::open(&k.modules).unwrap();
        let dir = tempfile::tempdir().unwrap();
        for m in ["virtio", "virtio_ring", "virtio_mmio", "virtio_blk"] {
            let from = index.file(m).unwrap();
            fs::copy(from, dir.path().join(from.file_name().unwrap())).unwrap();
        }
        let f = Features {
            block: true,
            balloon: true,
            ..Default::default()
        };
        let (mods, missing) = resolve_features(Some(dir.path()), f).unwrap();
        assert_eq!(missing, vec!["virtio_balloon"]);
        assert_eq!(mods.last().unwrap().name, "virtio_blk");
        // A required driver that is missing is still an error.
        let f = Features { net: true, ..f };
        let err = resolve_features(Some(dir.path()), f).unwrap_err();
        assert!(err.to_string().contains("virtio_net"), "{err}");
    }

    #[test]
    fn compressed_modules_are_read() {
        let k = crate::testutil::debian_kernel();
        let index = ModuleIndex::open(&k.modules).unwrap();
        let plain = index.file("virtio_blk").unwrap();
        let raw = fs::read(plain).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let xz = dir.path().join("virtio_blk.ko.xz");
        let mut enc = xz2::write::XzEncoder::new(Vec::new(), 1);
        std::io::Write::write_all(&mut enc, &raw).unwrap();
        fs::write(&xz, enc.finish().unwrap()).unwrap();
        let zst = dir.path().join("virtio-ring.ko.zst");
        let ring = fs::read(index.file("virtio_ring").unwrap()).unwrap();
        fs::write(&zst, zstd::encode_all(&ring[..], 3).unwrap()).unwrap();
        assert_eq!(read_module(&xz).unwrap(), raw);
        assert_eq!(depends(&xz).unwrap(), vec!["virtio", "virtio_ring"]);
        let index = ModuleIndex::open(dir.path()).unwrap();
        assert_eq!(index.file("virtio_ring"), Some(zst.as_path()));
    }
}
