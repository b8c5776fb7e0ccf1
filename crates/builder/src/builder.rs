//! The build itself: stages in dependency order, each step from the cache or done (config
//! instructions on the config, COPY/ADD/WORKDIR layers on the host, RUN in the stage's
//! builder VM), and the image assembled in the content store at the end, named only when
//! all of it is there (docs/build.md).

use std::collections::{BTreeMap, HashMap};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use dockerfile::{Base, Instruction, Stages, Step};
use oci::{media_type, ContainerConfig, Descriptor, Digest, ImageConfig};

use super::cache::{self, BuildCache, CachedStep};
use super::config::{self as cfg, StageFlags};
use super::context::Context;
use super::copy::{plan, CopyEnv, CopySource, CopySpec};
use super::stage::StageTree;
use super::tree::{DirTree, SourceTree};
use super::vm::{BuilderVm, OutputSink, RunSpec, VmSpec};
use super::workdir::{workdir_layer, workdir_owner};
use crate::mounts::RunMount;
use runtime::image::PullPolicy;
use runtime::state::VmOptions;

/// What `container build` was asked for.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// The state root.
    pub root: PathBuf,
    /// The static vminitd for builder VMs.
    pub vminitd: Option<PathBuf>,
    /// Names for the image (`-t`).
    pub tags: Vec<String>,
    /// `--build-arg`s.
    pub build_args: BTreeMap<String, String>,
    /// `--target`.
    pub target: Option<String>,
    /// `--no-cache`.
    pub no_cache: bool,
    /// `--pull`: look for newer base images.
    pub pull: bool,
    /// `--label`s of the image.
    pub labels: BTreeMap<String, String>,
    /// `--network none` gives RUN no network.
    pub network: bool,
    /// Builder VM sizing.
    pub vm: VmOptions,
    /// How base images are pulled.
    pub pull_options: oci::PullOptions,
    /// `--secret`s by id: what `RUN --mount=type=secret` reads.
    pub secrets: BTreeMap<String, Vec<u8>>,
}

/// A step of the build as it starts, for front ends to show in their own words: the CLI as
/// buildah does (`[1/2] STEP 2/4: RUN make`), the Engine API as docker's classic builder
/// (`Step 3/9 : RUN make`, counted over the whole build).
#[derive(Debug, Clone, Copy)]
pub struct StepReport<'a> {
    /// The stage's place among the stages built (1-based) and their number.
    pub stage: (usize, usize),
    /// The step's place in its stage (1-based; 0 is the stage's FROM) and the stage's steps.
    pub in_stage: (usize, usize),
    /// The step's place in the whole build (1-based, FROMs included) and the whole build's
    /// steps as far as known when it starts (a later stage's ONBUILD triggers add to it).
    pub overall: (usize, usize),
    /// The instruction as written (a FROM as `FROM image [AS name]`).
    pub instruction: &'a str,
}

impl StepReport<'_> {
    /// buildah's line: `[stage k/n] STEP i/m: INSTRUCTION`, or `[k/n] FROM: …` for a FROM.
    pub fn buildah_line(&self) -> String {
        let prefix = format!("[{}/{}]", self.stage.0, self.stage.1);
        match self.in_stage.0 {
            0 => format!(
                "{prefix} FROM: {}",
                self.instruction.trim_start_matches("FROM ")
            ),
            i => format!(
                "{prefix} STEP {i}/{}: {}",
                self.in_stage.1, self.instruction
            ),
        }
    }

    /// docker's classic builder line: `Step i/m : INSTRUCTION`.
    pub fn docker_line(&self) -> String {
        format!(
            "Step {}/{} : {}",
            self.overall.0, self.overall.1, self.instruction
        )
    }
}

/// Where the build reports what it does.
pub trait Progress: OutputSink {
    /// A step starts.
    fn step(&self, step: &StepReport<'_>);
    /// A line about the step (`--> Using cache …`).
    fn note(&self, text: &str);
}

/// What a build produced.
#[derive(Debug, Clone)]
pub struct BuildResult {
    /// The image ID: its config's digest.
    pub id: Digest,
    /// The manifest's digest.
    pub manifest: Digest,
    /// The manifest as an index would list it.
    pub manifest_descriptor: Descriptor,
    /// The layer blobs, lowest first.
    pub layers: Vec<Descriptor>,
    /// The names given to it.
    pub tags: Vec<String>,
}

/// A build failure: one line, naming the Dockerfile line where one is at fault.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The Dockerfile does not parse or its stages are inconsistent.
    #[error("{0}")]
    Dockerfile(String),
    /// A step failed (its line and what went wrong).
    #[error("Dockerfile:{line}: {message}")]
    Step {
        /// The step's line.
        line: usize,
        /// What failed.
        message: String,
    },
    /// A RUN exited non-zero.
    #[error(
        "Dockerfile:{line}: process \"{command}\" did not complete successfully: exit code: {code}"
    )]
    RunFailed {
        /// The step's line.
        line: usize,
        /// The command, as docker quotes it.
        command: String,
        /// Its exit code.
        code: i32,
    },
    /// Something of the host or the store failed.
    #[error("{0}")]
    Host(String),
}

impl BuildError {
    /// The exit code of the `build` command: 1 for any failed build, as docker's.
    pub fn exit_code(&self) -> i32 {
        1
    }
}

fn host<E: std::error::Error + 'static>(what: &str) -> impl FnOnce(E) -> BuildError + '_ {
    move |e| BuildError::Host(format!("{what}: {}", runtime::error_line(&e)))
}

fn at<E: std::error::Error + 'static>(line: usize) -> impl FnOnce(E) -> BuildError {
    move |e| BuildError::Step {
        line,
        message: runtime::error_line(&e),
    }
}

/// One layer of a stage.
#[derive(Debug, Clone)]
struct Layer {
    blob: Descriptor,
    diff_id: Digest,
}

/// A stage as it stands: its layers, config, the cache chain and, once needed, its file
/// index and builder VM.
struct StageState {
    name: String,
    layers: Vec<Layer>,
    image: ImageConfig,
    key: Digest,
    flags: StageFlags,
    args: BTreeMap<String, String>,
    tree: Option<StageTree>,
    vm: Option<BuilderVm>,
    /// Layers the VM has (its base, then each `LayerIn`/RUN).
    vm_layers: usize,
    /// The stage's cache mounts (id, mode, uid, gid), known before its VM boots.
    caches: Vec<(String, u32, u32, u32)>,
    /// Locks on the cache mounts' disks while the VM uses them.
    cache_locks: Vec<runtime::state::Lock>,
    /// The time of the stage's newest step: what config-only steps and the image's
    /// `created` take, so a rebuild from the cache gives the same image ID.
    last: String,
}

/// A finished stage, kept for `FROM stage` and `COPY --from`.
#[derive(Clone)]
struct StageResult {
    layers: Vec<Layer>,
    image: ImageConfig,
    key: Digest,
}

/// Builds the Dockerfile of `ctx` with `rt`'s state root and guest init: what front ends
/// call (`opts.root` and `opts.vminitd` are filled in).
pub async fn build_on(
    rt: &runtime::Runtime,
    ctx: &Context,
    mut opts: BuildOptions,
    progress: &dyn Progress,
) -> Result<BuildResult, BuildError> {
    opts.root = rt.root().to_path_buf();
    opts.vminitd = runtime::vminitd::find();
    build(ctx, &opts, progress).await
}

/// Builds the Dockerfile of `ctx` as `opts` says.
pub async fn build(
    ctx: &Context,
    opts: &BuildOptions,
    progress: &dyn Progress,
) -> Result<BuildResult, BuildError> {
    let text = std::str::from_utf8(ctx.dockerfile())
        .map_err(|_| BuildError::Dockerfile("the Dockerfile is not UTF-8 text".into()))?;
    let df = dockerfile::parse(text).map_err(|e| BuildError::Dockerfile(e.to_string()))?;
    for w in &df.warnings {
        progress.note(&format!("warning: Dockerfile:{}: {}", w.line, w.message));
    }
    let stages = df
        .stages()
        .map_err(|e| BuildError::Dockerfile(e.to_string()))?;
    let predefined = predefined_args();
    let global = stages
        .global_arg_values(&predefined, &opts.build_args)
        .map_err(|e| BuildError::Dockerfile(e.to_string()))?;
    // The target first: a wrong --target is the user's first problem, as in BuildKit.
    let target = stages
        .target(opts.target.as_deref())
        .map_err(|e| BuildError::Dockerfile(e.to_string()))?;
    let resolution = stages
        .resolve(&global)
        .map_err(|e| BuildError::Dockerfile(e.to_string()))?;
    let order = resolution.build_order(target);

    let store = oci::Store::open(&opts.root).map_err(host("open the content store"))?;
    // Blobs written here are named only at the end; prune must wait.
    let _gc = store
        .lock_gc(false)
        .map_err(host("lock the content store"))?;
    let scratch = crate::scratch::make(store.temp_path().parent().unwrap_or(&opts.root), "build")
        .map_err(host("create a scratch directory"))?;
    let mut b = Builder {
        opts,
        ctx,
        store,
        cache: BuildCache::new(&opts.root),
        stages: &stages,
        global,
        done: HashMap::new(),
        unpacked: HashMap::new(),
        scratch: scratch.path().to_path_buf(),
        progress,
        stage_count: order.len(),
        step_seq: 0,
        step_total: order
            .iter()
            .map(|&i| stages.stages[i].steps.len() + 1)
            .sum(),
    };
    let mut result = None;
    for (k, &index) in order.iter().enumerate() {
        let base = resolution.stages[index].base.clone();
        let r = b.stage(k, index, &base).await?;
        b.done.insert(index, r.clone());
        result = Some(r);
    }
    let result = result.ok_or_else(|| BuildError::Dockerfile("no stage to build".into()))?;
    let unused = unused_build_args(&stages, &opts.build_args);
    if !unused.is_empty() {
        progress.note(&format!(
            "warning: one or more build args were not consumed: [{}]",
            unused.join(" ")
        ));
    }
    b.commit(result)
}

/// `--build-arg`s no ARG of the Dockerfile declares (docker warns about them); the proxy
/// variables need no ARG.
fn unused_build_args(stages: &Stages, args: &BTreeMap<String, String>) -> Vec<String> {
    let declared = |name: &str| {
        stages
            .global_args
            .iter()
            .chain(stages.stages.iter().flat_map(|s| s.steps.iter()))
            .any(|s| match &s.instruction {
                Instruction::Arg(d) => d.iter().any(|d| d.name == name),
                _ => false,
            })
    };
    args.keys()
        .filter(|k| !PROXY_ARGS.contains(&k.as_str()) && !declared(k))
        .cloned()
        .collect()
}

/// `TARGETPLATFORM` and friends, and the proxy variables (docker's predefined ARGs).
fn predefined_args() -> dockerfile::Vars {
    let p = oci::Platform::host();
    let platform = format!("{}/{}", p.os, p.architecture);
    let mut v = dockerfile::Vars::new();
    for (prefix, value) in [("TARGET", &platform), ("BUILD", &platform)] {
        v.insert(format!("{prefix}PLATFORM"), value.clone());
        v.insert(format!("{prefix}OS"), p.os.clone());
        v.insert(format!("{prefix}ARCH"), p.architecture.clone());
        v.insert(
            format!("{prefix}VARIANT"),
            p.variant.clone().unwrap_or_default(),
        );
    }
    v
}

/// Build arguments that need no ARG to reach RUN (docker's list).
const PROXY_ARGS: [&str; 8] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
];

struct Builder<'a> {
    opts: &'a BuildOptions,
    ctx: &'a Context,
    store: oci::Store,
    cache: BuildCache,
    stages: &'a Stages,
    global: dockerfile::Vars,
    done: HashMap<usize, StageResult>,
    /// Stages and images unpacked for `COPY --from`.
    unpacked: HashMap<String, PathBuf>,
    scratch: PathBuf,
    progress: &'a dyn Progress,
    stage_count: usize,
    /// Steps reported so far over the whole build, and how many there are.
    step_seq: usize,
    step_total: usize,
}

impl Builder<'_> {
    /// Reports step `at` (stage, step in stage) of a stage of `total` steps.
    fn report(&mut self, at: (usize, usize), total: usize, instruction: &str) {
        self.step_seq += 1;
        // ONBUILD triggers make a stage longer than its Dockerfile lines.
        self.step_total = self.step_total.max(self.step_seq);
        self.progress.step(&StepReport {
            stage: (at.0, self.stage_count),
            in_stage: (at.1, total),
            overall: (self.step_seq, self.step_total),
            instruction,
        });
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Docker's media types for layers, as an OCI manifest lists them.
fn oci_layer(mut d: Descriptor) -> Descriptor {
    if d.media_type == media_type::DOCKER_LAYER_GZIP {
        d.media_type = media_type::OCI_LAYER_GZIP.into();
    }
    d
}

impl Builder<'_> {
    async fn base_image(&self, reference: &str) -> Result<oci::Image, BuildError> {
        let policy = if self.opts.pull {
            PullPolicy::Always
        } else {
            PullPolicy::Missing
        };
        let (_, image) = runtime::image::find_or_pull(
            &self.opts.root,
            reference,
            &self.opts.pull_options,
            policy,
            None,
        )
        .await
        .map_err(|e| BuildError::Host(runtime::error_line(&e)))?;
        Ok(image)
    }

    async fn stage(
        &mut self,
        k: usize,
        index: usize,
        base: &Base,
    ) -> Result<StageResult, BuildError> {
        let stage = &self.stages.stages[index];
        self.report((k + 1, 0), stage.steps.len(), &from_line(stage));
        let mut st = match base {
            Base::Scratch => {
                let p = oci::Platform::host();
                StageState::new(
                    &stage.display_name(),
                    Vec::new(),
                    ImageConfig {
                        architecture: p.architecture,
                        os: p.os,
                        ..Default::default()
                    },
                    cache::root_key("scratch"),
                )
            }
            Base::Image(reference) => {
                let image = self.base_image(reference).await.map_err(|e| match e {
                    BuildError::Host(m) => BuildError::Step {
                        line: stage.line,
                        message: m,
                    },
                    e => e,
                })?;
                let diff_ids = image.config.rootfs.diff_ids.clone();
                if diff_ids.len() != image.layers().len() {
                    return Err(BuildError::Step {
                        line: stage.line,
                        message: format!(
                            "image {reference}: its config lists {} layers, its manifest {}",
                            diff_ids.len(),
                            image.layers().len()
                        ),
                    });
                }
                let layers = image
                    .layers()
                    .iter()
                    .cloned()
                    .zip(diff_ids)
                    .map(|(blob, diff_id)| Layer {
                        blob: oci_layer(blob),
                        diff_id,
                    })
                    .collect();
                StageState::new(
                    &stage.display_name(),
                    layers,
                    image.config.clone(),
                    cache::root_key(image.manifest_digest().as_str()),
                )
            }
            Base::Stage(i) => {
                let r = self.done.get(i).cloned().ok_or_else(|| {
                    BuildError::Dockerfile(format!("stage {i} was not built before its use"))
                })?;
                StageState::new(
                    &stage.display_name(),
                    r.layers,
                    r.image,
                    cache::chain(&r.key, &["FROM stage"]),
                )
            }
        };
        // The base's ONBUILD triggers run first, and are not inherited.
        let triggers = std::mem::take(&mut st.image.config.on_build);
        let mut steps: Vec<Step> = Vec::new();
        for t in &triggers {
            let parsed = dockerfile::parse(t).map_err(|e| BuildError::Step {
                line: stage.line,
                message: format!("ONBUILD trigger {t:?}: {}", e.message),
            })?;
            for mut s in parsed.steps {
                s.line = stage.line;
                steps.push(s);
            }
        }
        steps.extend(stage.steps.iter().cloned());
        // The VM's cache disks are attached at boot: every cache the stage's RUNs name.
        for s in &steps {
            if let Instruction::Run(r) = &s.instruction {
                for m in &r.mounts {
                    if let Ok(RunMount::Cache {
                        id, mode, uid, gid, ..
                    }) = crate::mounts::parse(m)
                    {
                        if !st.caches.iter().any(|c| c.0 == id) {
                            st.caches.push((id, mode, uid, gid));
                        }
                    }
                }
            }
        }
        let outcome = self.steps(&mut st, &steps, k + 1).await;
        if let Some(vm) = st.vm.take() {
            vm.stop().await;
        }
        outcome?;
        st.image.created = Some(st.last.clone());
        Ok(StageResult {
            layers: st.layers,
            image: st.image,
            key: st.key,
        })
    }

    async fn steps(
        &mut self,
        st: &mut StageState,
        steps: &[Step],
        stage: usize,
    ) -> Result<(), BuildError> {
        let lexer = dockerfile::Lexer::new(self.stages.escape);
        let total = steps.len();
        for (i, step) in steps.iter().enumerate() {
            self.report((stage, i + 1), total, &step.original);
            let vars = st.lookup();
            let instruction = if step.instruction.expands_variables() {
                step.instruction
                    .expand(&lexer, &vars)
                    .map_err(at(step.line))?
            } else {
                step.instruction.clone()
            };
            match &instruction {
                Instruction::Arg(decls) => {
                    for d in decls {
                        let value = match (self.opts.build_args.get(&d.name), &d.default) {
                            (Some(v), _) => Some(v.clone()),
                            (None, Some(default)) => Some(default.clone()),
                            (None, None) => self
                                .global
                                .get(&d.name)
                                .filter(|_| self.declared_globally(&d.name))
                                .cloned()
                                .or_else(|| predefined_args().get(&d.name).cloned()),
                        };
                        if let Some(v) = value {
                            st.args.insert(d.name.clone(), v);
                        }
                    }
                    st.key = cache::chain(&st.key, &[&format!("{instruction:?}")]);
                }
                Instruction::Run(run) => self.run(st, step, run).await?,
                Instruction::Copy(_) | Instruction::Add(_) => {
                    self.copy(st, step, &instruction).await?
                }
                Instruction::Workdir(path) => {
                    cfg::apply(
                        &mut st.image.config,
                        &mut st.flags,
                        &instruction,
                        &mut st.image.author,
                    )
                    .map_err(at(step.line))?;
                    let dir = st.image.config.working_dir.clone().unwrap_or_default();
                    let user = st.image.config.user.clone().unwrap_or_default();
                    st.key = cache::chain(&st.key, &[&format!("WORKDIR {dir} {user}")]);
                    let tree = st.tree(&self.store)?;
                    let users = tree.users();
                    let owner = workdir_owner(&user, &users);
                    let planned = workdir_layer(&dir, owner, tree, 0).map_err(at(step.line))?;
                    let layer = match planned {
                        Some(p) => Some(self.store_plan(&p, step.line)?),
                        None => None,
                    };
                    let created_by = format!("WORKDIR {path}");
                    // Its layer depends on nothing but the stage: no new time either.
                    let created = st.last.clone();
                    self.add_layer(st, layer, &created_by, &created)?;
                }
                Instruction::From(_) => {
                    return Err(BuildError::Step {
                        line: step.line,
                        message: "FROM inside a stage".into(),
                    })
                }
                other => {
                    cfg::apply(
                        &mut st.image.config,
                        &mut st.flags,
                        other,
                        &mut st.image.author,
                    )
                    .map_err(at(step.line))?;
                    st.key = cache::chain(&st.key, &[&format!("{other:?}")]);
                    let created_by = step.original.clone();
                    let created = st.last.clone();
                    st.image
                        .history
                        .push(cfg::history(&created, &created_by, true));
                }
            }
        }
        Ok(())
    }

    /// Whether `name` is a global ARG (a stage's `ARG name` without a value takes its value).
    fn declared_globally(&self, name: &str) -> bool {
        self.stages
            .global_args
            .iter()
            .any(|s| match &s.instruction {
                Instruction::Arg(d) => d.iter().any(|d| d.name == name),
                _ => false,
            })
    }

    async fn run(
        &mut self,
        st: &mut StageState,
        step: &Step,
        run: &dockerfile::Run,
    ) -> Result<(), BuildError> {
        let mounts = run
            .mounts
            .iter()
            .map(|m| crate::mounts::parse(m))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|m| BuildError::Step {
                line: step.line,
                message: format!("RUN --mount: {m}"),
            })?;
        let network = match run.network.as_deref() {
            None | Some("default") => self.opts.network,
            Some("none") => false,
            Some(other) => {
                return Err(BuildError::Step {
                    line: step.line,
                    message: format!("RUN --network={other} is not supported (default, none)"),
                })
            }
        };
        // `RUN <<EOF` whose body starts with `#!`: BuildKit runs the body as a program from a
        // file at /dev/pipes/NAME (outside the rootfs: nothing of it lands in the layer).
        let program = match (run.heredocs.as_slice(), &run.command) {
            ([doc], dockerfile::Command::Shell(line))
                if is_lone_heredoc(line, &doc.name) && doc.text().starts_with("#!") =>
            {
                if doc.name.contains('/') || doc.name.is_empty() {
                    return Err(BuildError::Step {
                        line: step.line,
                        message: format!("invalid here-document name {:?}", doc.name),
                    });
                }
                Some((format!("/dev/pipes/{}", doc.name), doc.text()))
            }
            _ => None,
        };
        let args = match &program {
            Some((path, _)) => vec![path.clone()],
            None => run_argv(run, &st.image.config),
        };
        let mut env = st.image.config.env.clone();
        // Build arguments reach RUN as environment, under ENV of the same name.
        for (k, v) in &st.args {
            if cfg::get_env(&env, k).is_none() {
                env.push(format!("{k}={v}"));
            }
        }
        for k in PROXY_ARGS {
            if let (Some(v), None) = (self.opts.build_args.get(k), cfg::get_env(&env, k)) {
                env.push(format!("{k}={v}"));
            }
        }
        if cfg::get_env(&env, "PATH").is_none() {
            env.push(format!("PATH={}", cfg::DEFAULT_PATH));
        }
        let mut spec = RunSpec {
            args: args.clone(),
            env: env.clone(),
            cwd: st
                .image
                .config
                .working_dir
                .clone()
                .unwrap_or_else(|| "/".into()),
            user: st.image.config.user.clone().unwrap_or_default(),
            mounts: Vec::new(),
            network,
        };
        let created_by = format!("RUN {}", args.join(" "));
        // What the mounts bring in: a bind's files count, a cache's or a secret's do not
        // (BuildKit's rule).
        let mut mount_parts: Vec<String> = program.iter().map(|(_, text)| text.clone()).collect();
        for m in &mounts {
            mount_parts.push(format!("{m:?}"));
            if let RunMount::Bind { source, from, .. } = m {
                let dir_tree;
                let tree: &dyn SourceTree = match self.bind_source(from, step.line).await? {
                    Some(d) => {
                        dir_tree = DirTree::new(d, "mount source");
                        &dir_tree
                    }
                    None => self.ctx,
                };
                let pattern = if source.is_empty() { "." } else { source };
                let digest =
                    super::digest::source_digest(tree, pattern, None).map_err(at(step.line))?;
                mount_parts.push(digest.to_string());
            }
        }
        let key = cache::chain(
            &st.key,
            &[
                "RUN",
                &args.join("\0"),
                &env.join("\0"),
                &spec.cwd,
                &spec.user,
                if network { "net" } else { "nonet" },
                &mount_parts.join("\0"),
            ],
        );
        if let Some(hit) = self.cached(&key) {
            st.key = key;
            return self.add_cached(st, hit, &created_by);
        }
        if st.vm.is_none() {
            let base = self.base_ext4(&st.layers).await?;
            let vm = BuilderVm::boot(&VmSpec {
                root: self.opts.root.clone(),
                vminitd: self.opts.vminitd.clone(),
                base,
                network: self.opts.network,
                vm: self.opts.vm.clone(),
                caches: self.cache_disks(st, step.line)?,
            })
            .await
            .map_err(|e| BuildError::Step {
                line: step.line,
                message: runtime::error_line(&e),
            })?;
            st.vm = Some(vm);
            st.vm_layers = st.layers.len();
        }
        // Layers made on the host since the VM started (COPY, WORKDIR, cache hits).
        while st.vm_layers < st.layers.len() {
            let blob = self.store.blob_path(&st.layers[st.vm_layers].blob.digest);
            let tar = self.scratch.join("in.tar");
            decompress_to(&blob, &tar).map_err(host("read a layer"))?;
            if let Some(vm) = st.vm.as_mut() {
                vm.layer_in(&tar).await.map_err(at(step.line))?;
            }
            st.vm_layers += 1;
        }
        spec.mounts = self.guest_mounts(st, &mounts, step.line).await?;
        if let Some((path, text)) = &program {
            let tar = self.scratch.join("program.tar");
            secret_tar(&tar, text.as_bytes(), 0o755, 0, 0).map_err(host("write the program"))?;
            let vm = st
                .vm
                .as_mut()
                .ok_or_else(|| BuildError::Host("no builder VM".into()))?;
            let guest = vm.send_files(&tar).await.map_err(at(step.line))?;
            spec.mounts.push(agent::Mount {
                source: format!("{guest}/secret"),
                target: path.clone(),
                fstype: "bind".into(),
                options: vec!["ro".into()],
            });
        }
        let vm = st
            .vm
            .as_mut()
            .ok_or_else(|| BuildError::Host("no builder VM".into()))?;
        let exit = vm.run(&spec, self.progress).await.map_err(at(step.line))?;
        if exit.code != 0 {
            return Err(BuildError::RunFailed {
                line: step.line,
                command: args.join(" "),
                code: exit.code,
            });
        }
        let tar = self.scratch.join("out.tar");
        vm.layer_out(&tar).await.map_err(at(step.line))?;
        let layer = self.store_tar(&tar)?;
        if let (Some(tree), Some(_)) = (st.tree.as_mut(), &layer) {
            let f = std::fs::File::open(&tar).map_err(host("read the step's layer"))?;
            tree.apply_layer(BufReader::new(f))
                .map_err(host("index the step's layer"))?;
        }
        let created = now();
        self.remember(&key, &layer, &created)?;
        st.key = key;
        st.push(layer, &created_by, &created);
        // The VM has the step's directory already, empty or not.
        st.vm_layers = st.layers.len();
        Ok(())
    }

    /// Where a bind mount's files come from: a stage's or image's unpacked directory, or
    /// the context (`None`).
    async fn bind_source(
        &mut self,
        from: &Option<String>,
        line: usize,
    ) -> Result<Option<PathBuf>, BuildError> {
        match from {
            Some(name) => Ok(Some(self.source_dir(name, line).await?)),
            None => Ok(None),
        }
    }

    /// The cache mounts' disks for a stage's VM, made on first use (an ext4 image with a
    /// `data` directory of the mount's owner and mode) and locked while the VM runs: one
    /// build at a time uses a cache.
    fn cache_disks(&self, st: &mut StageState, line: usize) -> Result<Vec<PathBuf>, BuildError> {
        let dir = cache::cache_dir(&self.opts.root).join("mounts");
        std::fs::create_dir_all(&dir).map_err(host("create the cache mounts' directory"))?;
        let mut disks = Vec::new();
        for (id, mode, uid, gid) in &st.caches {
            let name = oci::Digest::of(id.as_bytes()).hex().to_string();
            let disk = dir.join(format!("{name}.ext4"));
            let lock = runtime::state::Lock::exclusive(&dir.join(format!("{name}.lock"))).map_err(
                |e| BuildError::Step {
                    line,
                    message: format!("lock cache mount {id}: {}", runtime::error_line(&e)),
                },
            )?;
            if !disk.exists() {
                let tar = self.scratch.join("cache-root.tar");
                cache_root_tar(&tar, *mode, *uid, *gid).map_err(host("make a cache mount"))?;
                let tmp = atomic_file::temp_sibling(&disk);
                let opts = ext4::FormatOptions {
                    min_size: Some(CACHE_MOUNT_SIZE),
                    ..Default::default()
                };
                ext4::build_from_layers(&[tar], &tmp, &opts)
                    .map_err(|e| host("make a cache mount")(std::io::Error::other(e)))?;
                std::fs::rename(&tmp, &disk).map_err(host("make a cache mount"))?;
            }
            st.cache_locks.push(lock);
            disks.push(disk);
        }
        Ok(disks)
    }

    /// The guest side of a RUN's mounts: files sent into the VM for binds and secrets, the
    /// cache disks' directories, tmpfs.
    async fn guest_mounts(
        &mut self,
        st: &mut StageState,
        mounts: &[RunMount],
        line: usize,
    ) -> Result<Vec<agent::Mount>, BuildError> {
        let mut out = Vec::new();
        let err = |message: String| BuildError::Step { line, message };
        for m in mounts {
            let mount =
                |source: String, target: &str, fstype: &str, options: Vec<String>| agent::Mount {
                    source,
                    target: target.to_string(),
                    fstype: fstype.into(),
                    options,
                };
            match m {
                RunMount::Tmpfs { target, size } => out.push(mount(
                    "tmpfs".into(),
                    target,
                    "tmpfs",
                    size.iter().map(|s| format!("size={s}")).collect(),
                )),
                RunMount::Cache {
                    id,
                    target,
                    readonly,
                    ..
                } => {
                    let i = st.caches.iter().position(|c| &c.0 == id).ok_or_else(|| {
                        err(format!(
                            "cache mount {id:?} was not known when the stage's VM started \
                             (an id or target made of variables is not supported)"
                        ))
                    })?;
                    let ro = readonly.then(|| "ro".to_string());
                    out.push(mount(
                        super::vm::cache_dir(i),
                        target,
                        "bind",
                        ro.into_iter().collect(),
                    ));
                }
                RunMount::Bind {
                    source,
                    target,
                    from,
                    rw,
                } => {
                    let dir_tree;
                    let tree: &dyn SourceTree = match self.bind_source(from, line).await? {
                        Some(d) => {
                            dir_tree = DirTree::new(d, "mount source");
                            &dir_tree
                        }
                        None => self.ctx,
                    };
                    let pattern = if source.is_empty() { "." } else { source };
                    let clean =
                        crate::path::clean(pattern, crate::path::Above::Clamp).unwrap_or_default();
                    let resolved = super::tree::resolve(tree, &clean, true).map_err(at(line))?;
                    let is_dir = tree
                        .entry(&resolved)
                        .map_err(at(line))?
                        .is_some_and(|e| e.is_dir());
                    let spec = CopySpec::new(
                        super::copy::Op::Copy,
                        vec![CopySource::Path(pattern.to_string())],
                        "/",
                    );
                    let empty = super::tree::EmptyTree::new("mount");
                    let env = CopyEnv {
                        source: tree,
                        stage: &empty,
                        users: &super::user::NoUsers,
                    };
                    let planned = plan(&spec, &env).map_err(at(line))?;
                    let tar = self.scratch.join("mount.tar");
                    {
                        let mut f = BufWriter::new(
                            std::fs::File::create(&tar).map_err(host("write a mount's files"))?,
                        );
                        planned.write(&mut f, None).map_err(at(line))?;
                        f.flush().map_err(host("write a mount's files"))?;
                    }
                    let vm = st
                        .vm
                        .as_mut()
                        .ok_or_else(|| BuildError::Host("no builder VM".into()))?;
                    let guest = vm.send_files(&tar).await.map_err(at(line))?;
                    let source = if is_dir {
                        guest
                    } else {
                        let base = resolved.rsplit('/').next().unwrap_or(&resolved);
                        format!("{guest}/{base}")
                    };
                    let ro = (!rw).then(|| "ro".to_string());
                    out.push(mount(source, target, "bind", ro.into_iter().collect()));
                }
                RunMount::Secret {
                    id,
                    target,
                    required,
                    mode,
                    uid,
                    gid,
                } => {
                    let Some(value) = self.opts.secrets.get(id) else {
                        if *required {
                            return Err(err(format!(
                                "secret {id} is required but was not given (--secret id={id},src=FILE)"
                            )));
                        }
                        continue;
                    };
                    let tar = self.scratch.join("secret.tar");
                    secret_tar(&tar, value, *mode, *uid, *gid).map_err(host("write a secret"))?;
                    let vm = st
                        .vm
                        .as_mut()
                        .ok_or_else(|| BuildError::Host("no builder VM".into()))?;
                    let guest = vm.send_files(&tar).await.map_err(at(line))?;
                    let _ = std::fs::remove_file(&tar);
                    out.push(mount(
                        format!("{guest}/secret"),
                        target,
                        "bind",
                        vec!["ro".into()],
                    ));
                }
            }
        }
        Ok(out)
    }

    async fn copy(
        &mut self,
        st: &mut StageState,
        step: &Step,
        instruction: &Instruction,
    ) -> Result<(), BuildError> {
        let workdir = st.image.config.working_dir.clone().unwrap_or_default();
        let workdir = workdir.trim_end_matches('/').to_string();
        let (mut spec, from) = match instruction {
            Instruction::Copy(c) => (
                CopySpec::from_copy(c, &workdir).map_err(at(step.line))?,
                c.from.clone(),
            ),
            Instruction::Add(a) => (
                CopySpec::from_add(a, &workdir).map_err(at(step.line))?,
                None,
            ),
            _ => return Ok(()),
        };
        if spec.urls().next().is_some() {
            let dir = self.scratch.join("downloads");
            std::fs::create_dir_all(&dir).map_err(host("create a download directory"))?;
            spec.download(&dir).await.map_err(at(step.line))?;
        }
        let from_dir = match &from {
            Some(name) => Some(self.source_dir(name, step.line).await?),
            None => None,
        };
        let dir_tree;
        let source: &dyn SourceTree = match (&from, &from_dir) {
            (Some(name), Some(dir)) => {
                dir_tree = DirTree::new(dir.clone(), name);
                &dir_tree
            }
            _ => self.ctx,
        };
        // The key: the instruction and the digests of everything it reads.
        let mut parts = vec![format!("{instruction:?}"), workdir.clone()];
        let excludes = if spec.excludes.is_empty() {
            None
        } else {
            Some(dockerfile::Ignore::from_patterns(spec.excludes.iter()).map_err(at(step.line))?)
        };
        for s in &spec.sources {
            match s {
                CopySource::Path(p) => parts.push(
                    super::digest::source_digest(source, p, excludes.as_ref())
                        .map_err(at(step.line))?
                        .to_string(),
                ),
                CopySource::Download(d) => parts.push(
                    file_digest(d.path())
                        .map_err(host("read a download"))?
                        .to_string(),
                ),
                CopySource::Inline { .. } | CopySource::Url(_) => {}
            }
        }
        if let Some(chown) = &spec.chown {
            // A name's meaning depends on the stage's /etc/passwd.
            let users = st.tree(&self.store)?.users();
            let owner = super::user::OwnerSpec::parse(chown)
                .and_then(|o| o.resolve(&users))
                .map_err(at(step.line))?;
            parts.push(format!("{}:{}", owner.0, owner.1));
        }
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        let key = cache::chain(&st.key, &refs);
        let created_by = step.original.clone();
        if let Some(hit) = self.cached(&key) {
            st.key = key;
            return self.add_cached(st, hit, &created_by);
        }
        let tree = st.tree(&self.store)?;
        let users = tree.users();
        let env = CopyEnv {
            source,
            stage: tree,
            users: &users,
        };
        let planned = plan(&spec, &env).map_err(at(step.line))?;
        let layer = if planned.is_empty() {
            None
        } else {
            Some(self.store_plan(&planned, step.line)?)
        };
        drop(planned);
        let created = now();
        self.remember(&key, &layer.as_ref().map(|(l, _)| l.clone()), &created)?;
        st.key = key;
        self.add_layer(st, layer, &created_by, &created)
    }

    /// A stage's or an image's files on the host, for `COPY --from`.
    async fn source_dir(&mut self, name: &str, line: usize) -> Result<PathBuf, BuildError> {
        if let Some(d) = self.unpacked.get(name) {
            return Ok(d.clone());
        }
        let blobs: Vec<PathBuf> = match self.stages.find(name) {
            Some(i) => {
                let r = self.done.get(&i).ok_or_else(|| BuildError::Step {
                    line,
                    message: format!("stage {name} is not built before this step"),
                })?;
                r.layers
                    .iter()
                    .map(|l| self.store.blob_path(&l.blob.digest))
                    .collect()
            }
            None => {
                let image = self.base_image(name).await.map_err(|e| BuildError::Step {
                    line,
                    message: e.to_string(),
                })?;
                image
                    .layers()
                    .iter()
                    .map(|l| self.store.blob_path(&l.digest))
                    .collect()
            }
        };
        let dir = self.scratch.join(format!("from-{}", self.unpacked.len()));
        std::fs::create_dir_all(&dir).map_err(host("create a directory"))?;
        let d = dir.clone();
        tokio::task::spawn_blocking(move || super::unpack::unpack_layers(&d, &blobs))
            .await
            .map_err(host("unpack a stage"))?
            .map_err(at(line))?;
        self.unpacked.insert(name.to_string(), dir.clone());
        Ok(dir)
    }

    fn cached(&self, key: &Digest) -> Option<CachedStep> {
        if self.opts.no_cache {
            return None;
        }
        self.cache.get(key, &self.store)
    }

    fn add_cached(
        &self,
        st: &mut StageState,
        hit: CachedStep,
        created_by: &str,
    ) -> Result<(), BuildError> {
        self.progress.note("--> Using cache");
        let layer = match (hit.layer, hit.diff_id) {
            (Some(blob), Some(diff_id)) => Some(Layer { blob, diff_id }),
            _ => None,
        };
        if let (Some(tree), Some(l)) = (st.tree.as_mut(), &layer) {
            let f = self
                .store
                .open_blob(&l.blob.digest)
                .map_err(host("read a cached layer"))?;
            tree.apply_layer(BufReader::new(f))
                .map_err(host("index a cached layer"))?;
        }
        st.push(layer, created_by, &hit.created);
        Ok(())
    }

    fn remember(
        &self,
        key: &Digest,
        layer: &Option<Layer>,
        created: &str,
    ) -> Result<(), BuildError> {
        let record = CachedStep {
            layer: layer.as_ref().map(|l| l.blob.clone()),
            diff_id: layer.as_ref().map(|l| l.diff_id.clone()),
            created: created.to_string(),
        };
        self.cache
            .put(key, &record)
            .map_err(host("write the build cache"))
    }

    /// Adds a layer made on the host (COPY, ADD, WORKDIR) to the stage and its index.
    fn add_layer(
        &self,
        st: &mut StageState,
        layer: Option<(Layer, tempfile::NamedTempFile)>,
        created_by: &str,
        created: &str,
    ) -> Result<(), BuildError> {
        let layer = match layer {
            Some((l, tar)) => {
                if let Some(tree) = st.tree.as_mut() {
                    let f = tar.reopen().map_err(host("read a layer"))?;
                    tree.apply_layer(BufReader::new(f))
                        .map_err(host("index a layer"))?;
                }
                Some(l)
            }
            None => None,
        };
        st.push(layer, created_by, created);
        Ok(())
    }

    /// Writes a planned layer: its gzip into the store, its tar kept for the index.
    fn store_plan(
        &self,
        p: &super::layer::LayerPlan,
        line: usize,
    ) -> Result<(Layer, tempfile::NamedTempFile), BuildError> {
        let written = p.write_files(&self.scratch).map_err(at(line))?;
        let (digest, size) = written
            .digests
            .gzip
            .clone()
            .ok_or_else(|| BuildError::Host("a layer without its gzip".into()))?;
        self.store
            .commit_temp(written.gzip.path(), &digest)
            .map_err(host("store a layer"))?;
        let _ = written.gzip.keep();
        Ok((
            Layer {
                blob: Descriptor::new(media_type::OCI_LAYER_GZIP, digest, size),
                diff_id: written.digests.diff_id,
            },
            written.tar,
        ))
    }

    /// Stores a RUN's layer tar; `None` when it has no entry.
    fn store_tar(&self, tar: &Path) -> Result<Option<Layer>, BuildError> {
        Ok(store_layer_tar(&self.store, tar)?.map(|(blob, diff_id)| Layer { blob, diff_id }))
    }

    /// The ext4 image of `layers` (the rootfs cache, keyed by their chain of diff_ids),
    /// without the `lost+found` an ext4 usually has: RUN sees the layers' files only, as in
    /// docker and buildah (docs/architecture.md has why a filesystem needs none).
    async fn base_ext4(&self, layers: &[Layer]) -> Result<PathBuf, BuildError> {
        let mut h = oci::digest::Hasher::new();
        h.update(b"build-base-v2\0");
        for l in layers {
            h.update(l.diff_id.as_str().as_bytes());
            h.update(b"\0");
        }
        let key = h.finish().0;
        let blobs: Vec<PathBuf> = layers
            .iter()
            .map(|l| self.store.blob_path(&l.blob.digest))
            .collect();
        let root = self.opts.root.clone();
        tokio::task::spawn_blocking(move || {
            let cache = runtime::rootfs::RootfsCache::open(&root)?;
            cache.ensure(key.as_str(), |tmp| {
                let opts = ext4::FormatOptions {
                    lost_found: false,
                    ..Default::default()
                };
                ext4::build_from_layers(&blobs, tmp, &opts).map(|_| ())
            })
        })
        .await
        .map_err(host("make the stage's base"))?
        .map_err(host("make the stage's base"))
    }

    /// Writes the config and manifest of the last stage and names them.
    fn commit(&self, r: StageResult) -> Result<BuildResult, BuildError> {
        let mut image = r.image;
        for (k, v) in &self.opts.labels {
            image.config.labels.insert(k.clone(), v.clone());
        }

        image.rootfs.diff_ids = r.layers.iter().map(|l| l.diff_id.clone()).collect();
        let blobs: Vec<Descriptor> = r.layers.iter().map(|l| l.blob.clone()).collect();
        let (id, desc, tags) = write_image(&self.store, &image, &blobs, &self.opts.tags)?;
        for t in &tags {
            runtime::events::image_event(&self.opts.root, "tag", id.as_str(), t);
        }
        let digest = desc.digest.clone();
        Ok(BuildResult {
            id,
            manifest: digest,
            manifest_descriptor: desc,
            layers: r.layers.iter().map(|l| l.blob.clone()).collect(),
            tags,
        })
    }
}

/// Stores a layer tar as a gzip blob (level 1, as host layers): its descriptor and diff_id;
/// `None` when the tar has no entry.
pub(crate) fn store_layer_tar(
    store: &oci::Store,
    tar: &Path,
) -> Result<Option<(Descriptor, Digest)>, BuildError> {
    let err = host("store the step's layer");
    let mut has_entries = false;
    {
        let f = std::fs::File::open(tar).map_err(host("read the step's layer"))?;
        let mut a = tar::Archive::new(BufReader::new(f));
        if let Some(e) = a.entries().map_err(host("read the step's layer"))?.next() {
            e.map_err(host("read the step's layer"))?;
            has_entries = true;
        }
    }
    if !has_entries {
        return Ok(None);
    }
    let mut input = std::fs::File::open(tar).map_err(host("read the step's layer"))?;
    let mut diff = oci::digest::Hasher::new();
    let mut w = store.ingest().map_err(err)?;
    {
        let mut gz =
            flate2::write::GzEncoder::new(BufWriter::new(&mut w), flate2::Compression::new(1));
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let k = input
                .read(&mut buf)
                .map_err(host("read the step's layer"))?;
            if k == 0 {
                break;
            }
            diff.update(&buf[..k]);
            gz.write_all(&buf[..k])
                .map_err(host("compress the step's layer"))?;
        }
        gz.finish()
            .and_then(|mut b| b.flush())
            .map_err(host("compress the step's layer"))?;
    }
    let (digest, size) = w
        .commit(None, None)
        .map_err(host("store the step's layer"))?;
    Ok(Some((
        Descriptor::new(media_type::OCI_LAYER_GZIP, digest, size),
        diff.finish().0,
    )))
}

/// Writes `image` (its `rootfs.diff_ids` matching `layers`) and its manifest into the store
/// and names it with each of `tags`: the image ID, the manifest's descriptor, the names.
pub(crate) fn write_image(
    store: &oci::Store,
    image: &ImageConfig,
    layers: &[Descriptor],
    tags: &[String],
) -> Result<(Digest, Descriptor, Vec<String>), BuildError> {
    let config = serde_json::to_vec(image).map_err(host("encode the image config"))?;
    let id = store
        .write_blob(&config)
        .map_err(host("store the image config"))?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "config": Descriptor::new(media_type::OCI_CONFIG, id.clone(), config.len() as u64),
        "layers": layers,
    });
    let bytes = serde_json::to_vec(&manifest).map_err(host("encode the manifest"))?;
    let digest = store
        .write_blob(&bytes)
        .map_err(host("store the manifest"))?;
    let desc = Descriptor::new(media_type::OCI_MANIFEST, digest, bytes.len() as u64);
    let mut names = Vec::new();
    for t in tags {
        let reference = oci::Reference::parse(t).map_err(host("tag"))?;
        store
            .set_ref(&reference, &desc)
            .map_err(host("name the image"))?;
        names.push(reference.to_string());
    }
    Ok((id, desc, names))
}

impl StageState {
    fn new(name: &str, layers: Vec<Layer>, image: ImageConfig, key: Digest) -> StageState {
        let last = image
            .created
            .clone()
            .unwrap_or_else(|| "1970-01-01T00:00:00Z".into());
        StageState {
            name: name.to_string(),
            layers,
            image,
            key,
            flags: StageFlags::default(),
            args: BTreeMap::new(),
            tree: None,
            vm: None,
            vm_layers: 0,
            caches: Vec::new(),
            cache_locks: Vec::new(),
            last,
        }
    }

    /// Variables for expansion: ARGs, then ENV over them (ENV wins, as in Docker).
    fn lookup(&self) -> HashMap<String, String> {
        let mut vars: HashMap<String, String> = self
            .args
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for e in &self.image.config.env {
            if let Some((k, v)) = e.split_once('=') {
                vars.insert(k.to_string(), v.to_string());
            }
        }
        vars
    }

    /// The stage's file index, read from its layers on first use.
    fn tree(&mut self, store: &oci::Store) -> Result<&StageTree, BuildError> {
        if self.tree.is_none() {
            let mut t = StageTree::new(&format!("stage {}", self.name));
            for l in &self.layers {
                let f = store
                    .open_blob(&l.blob.digest)
                    .map_err(host("read a layer of the stage"))?;
                t.apply_layer(BufReader::new(f))
                    .map_err(host("index the stage"))?;
            }
            self.tree = Some(t);
        }
        self.tree
            .as_ref()
            .ok_or_else(|| BuildError::Host("stage index".into()))
    }

    fn push(&mut self, layer: Option<Layer>, created_by: &str, created: &str) {
        let empty = layer.is_none();
        if let Some(l) = layer {
            self.layers.push(l);
        }
        if created > self.last.as_str() {
            self.last = created.to_string();
        }
        self.image
            .history
            .push(cfg::history(created, created_by, empty));
    }
}

/// A RUN's argv: exec form as written; shell form (with its here-documents) through SHELL;
/// a RUN that is one here-document runs its body.
fn run_argv(run: &dockerfile::Run, config: &ContainerConfig) -> Vec<String> {
    match &run.command {
        dockerfile::Command::Exec(args) => args.clone(),
        dockerfile::Command::Shell(line) => {
            // `RUN <<EOF` alone: Docker runs the here-document's body as the script.
            let script = match run.heredocs.as_slice() {
                [doc] if is_lone_heredoc(line, &doc.name) => doc.text(),
                _ => run.shell_script().unwrap_or_default(),
            };
            let mut args = cfg::shell(config);
            args.push(script);
            args
        }
    }
}

/// Whether a RUN's command line is nothing but the here-document `name` (`<<EOF`,
/// `<<-EOF`, `<<"EOF"`).
fn is_lone_heredoc(line: &str, name: &str) -> bool {
    let rest = line.trim().trim_start_matches("<<").trim_start_matches('-');
    rest.trim_matches(|c| c == '"' || c == '\'') == name
}

fn from_line(stage: &dockerfile::Stage) -> String {
    let mut s = format!("FROM {}", stage.from.image);
    if let Some(p) = &stage.from.platform {
        s = format!("FROM --platform={p} {}", stage.from.image);
    }
    if let Some(a) = &stage.from.alias {
        s.push_str(&format!(" AS {a}"));
    }
    s
}

/// The size of a cache mount's disk (sparse: only what is written takes space).
const CACHE_MOUNT_SIZE: u64 = 64 << 30;

/// A tar of one directory `data/` with the cache mount's owner and mode.
fn cache_root_tar(path: &Path, mode: u32, uid: u32, gid: u32) -> std::io::Result<()> {
    let mut b = tar::Builder::new(std::fs::File::create(path)?);
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(mode);
    h.set_uid(uid.into());
    h.set_gid(gid.into());
    h.set_size(0);
    h.set_mtime(0);
    b.append_data(&mut h, "data/", std::io::empty())?;
    b.into_inner()?.sync_all()
}

/// A tar of one file `secret` holding a secret's value (or a here-document program).
fn secret_tar(path: &Path, value: &[u8], mode: u32, uid: u32, gid: u32) -> std::io::Result<()> {
    let mut b = tar::Builder::new(std::fs::File::create(path)?);
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(mode);
    h.set_uid(uid.into());
    h.set_gid(gid.into());
    h.set_size(value.len() as u64);
    h.set_mtime(0);
    b.append_data(&mut h, "secret", value)?;
    b.into_inner()?.sync_all()
}

fn decompress_to(blob: &Path, out: &Path) -> std::io::Result<()> {
    let f = std::fs::File::open(blob)?;
    let (_, mut r) = super::compress::decompress(BufReader::new(f))?;
    let mut w = BufWriter::new(std::fs::File::create(out)?);
    std::io::copy(&mut r, &mut w)?;
    w.flush()
}

fn file_digest(p: &Path) -> std::io::Result<Digest> {
    let mut f = std::fs::File::open(p)?;
    let mut h = oci::digest::Hasher::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
    }
    Ok(h.finish().0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_of(text: &str) -> dockerfile::Run {
        let df = dockerfile::parse(text).unwrap();
        match &df.steps[0].instruction {
            Instruction::Run(r) => r.clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unused_build_args_are_named() {
        let df = dockerfile::parse("ARG A\nFROM x\nARG B=1\nRUN true\n").unwrap();
        let stages = df.stages().unwrap();
        let args: BTreeMap<String, String> = ["A", "B", "C", "HTTP_PROXY"]
            .iter()
            .map(|k| (k.to_string(), String::new()))
            .collect();
        assert_eq!(unused_build_args(&stages, &args), ["C"]);
    }

    #[test]
    fn heredoc_runs() {
        let config = ContainerConfig::default();
        let lone = run_of("RUN <<EOF\necho a\necho b\nEOF\n");
        assert_eq!(
            run_argv(&lone, &config),
            ["/bin/sh", "-c", "echo a\necho b\n"]
        );
        let chomped = run_of("RUN <<-\"EOT\"\n\techo c\nEOT\n");
        assert_eq!(run_argv(&chomped, &config), ["/bin/sh", "-c", "echo c\n"]);
        // A heredoc fed to a command stays the shell's business.
        let fed = run_of("RUN cat <<EOF > /f\nx\nEOF\n");
        assert_eq!(
            run_argv(&fed, &config),
            ["/bin/sh", "-c", "cat <<EOF > /f\nx\nEOF"]
        );
        let exec = run_of("RUN [\"echo\", \"hi\"]\n");
        assert_eq!(run_argv(&exec, &config), ["echo", "hi"]);
    }
}
