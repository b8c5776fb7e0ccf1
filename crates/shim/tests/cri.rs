//! The Kubernetes path: containerd's built-in CRI plugin, driven over its gRPC socket by a CRI
//! client (the `k8s-cri` crate, as the kubelet would), runs a pod of two containers with CNI
//! networking, once with runc as the runtime handler (the baseline the harness is proven on)
//! and once with our shim (handler `container`, runtime type `io.containerd.container.v2`).
//!
//! Everything runs inside a network namespace the test creates: containerd, so the CNI bridge
//! and the host ends of the veths live there (and go with it), and so do the shims and VMs it
//! starts. No image is pulled: the busybox test image and a pause image built here are imported
//! before the pod is run. containerd's log (with the shims' logs, which containerd copies into
//! it) and our monitors' logs are printed when a step fails.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{Containerd, Setup, TIMEOUT};
use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use testkit::{images, Netns};
use tonic::transport::{Channel, Endpoint, Uri};

/// The containers' image: busybox with httpd, nc and a page to serve.
const IMAGE: &str = "localhost/cri-busybox:1";
/// The sandbox ("pause") image containerd's CRI runs as each pod's first container.
const PAUSE_IMAGE: &str = "localhost/cri-pause:1";
/// The page the "srv" container serves.
const PAGE: &str = "hello from the pod\n";
/// The pods' CNI subnet (inside the test's own network namespace, so any test may use it).
const SUBNET_PREFIX: &str = "10.99.0.";
const SUBNET: &str = "10.99.0.0/24";

/// The image of the pod's containers, as an OCI archive for `ctr images import`.
fn image_tar() -> &'static Path {
    static TAR: OnceLock<PathBuf> = OnceLock::new();
    TAR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cri-image");
        let _ = std::fs::remove_dir_all(&dir);
        let layers = images::busybox_with(&["httpd", "nc", "printf", "ip"], |l| {
            l.dir("www", 0o755, 0, 0)
                .file("www/index.html", PAGE.as_bytes(), 0o644, 0, 0)
        });
        let config = serde_json::json!({
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["sh"],
        });
        images::archive(&dir, IMAGE, &layers, config)
    })
}

/// The pause image: a shell that waits for ever and exits 0 on SIGTERM (a bare `sleep` as pid
/// 1 would ignore it), the stand-in for registry.k8s.io/pause that no test may pull.
fn pause_tar() -> &'static Path {
    static TAR: OnceLock<PathBuf> = OnceLock::new();
    TAR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cri-pause");
        let _ = std::fs::remove_dir_all(&dir);
        let config = serde_json::json!({
            "Env": ["PATH=/bin"],
            "Entrypoint": ["/bin/sh", "-c", "trap 'exit 0' TERM INT; sleep 2147483647 & wait"],
        });
        images::archive(&dir, PAUSE_IMAGE, &images::busybox_layers(), config)
    })
}

/// containerd's CRI plugin config; `{d}` is the test's temp dir.
fn cri_config() -> String {
    format!(
        r#"[plugins."io.containerd.grpc.v1.cri"]
  # Imported by the test: RunPodSandbox pulls only an image it does not have.
  sandbox_image = "{PAUSE_IMAGE}"
  # Neither is available on the test machines (and the pods need no confinement to be tested).
  disable_apparmor = true
  enable_selinux = false
  # The sandbox's oom_score_adj (-998) is below the test runner's, which only CAP_SYS_RESOURCE
  # may set (test machines may run without it): keep every container's at or above ours.
  restrict_oom_score_adj = true
  # cgroup v1 here has no hugetlb hierarchy mounted.
  disable_hugetlb_controller = true
  # Streaming (Exec/Attach/PortForward URLs) is not used: loopback of the test's namespace.
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    # The handlers a RuntimeClass selects (RunPodSandboxRequest.runtime_handler).
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        # No systemd manages these containers' cgroups: runc writes cgroupfs itself.
        SystemdCgroup = false
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.container]
      runtime_type = "io.containerd.container.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    # Debian's containernetworking-plugins; containerd adds the loopback network itself.
    bin_dir = "/usr/lib/cni"
    conf_dir = "{{d}}/cni/conf"
    max_conf_num = 1
"#
    )
}

/// The pod network: a bridge (in the test's namespace) with host-local addresses whose leases
/// stay in the temp dir rather than /var/lib/cni; `{d}` is the temp dir.
fn cni_conflist(bridge: &str) -> String {
    serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "cri-test",
        "plugins": [{
            "type": "bridge",
            "bridge": bridge,
            "isGateway": true,
            "ipMasq": false,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": SUBNET}]],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": "{d}/cni/ipam",
            },
        }],
    })
    .to_string()
}

/// Runs a CRI call to its end; a call that takes longer than [`TIMEOUT`] has hung.
fn block<T>(
    rt: &tokio::runtime::Runtime,
    call: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, tonic::Status> {
    rt.block_on(async { tokio::time::timeout(TIMEOUT, call).await })
        .unwrap_or_else(|_| Err(tonic::Status::deadline_exceeded("hung (test timeout)")))
        .map(tonic::Response::into_inner)
}

/// A containerd with CRI in a network namespace of its own, the test images imported, and a
/// CRI client on its socket. On drop, pods left behind are stopped and removed, then
/// containerd, the shims and the namespaces (the test's and CRI's pods') go.
struct Cri {
    rt: tokio::runtime::Runtime,
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
    /// Taken in drop, to clean up after containerd is gone.
    containerd: Option<Containerd>,
    /// The pods' network namespaces (CRI's bind mounts under /run/netns) seen: removed at the
    /// end if containerd left them.
    pod_netns: Vec<PathBuf>,
}

impl Cri {
    fn start() -> Cri {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        // Unique (IFNAMSIZ) although the namespace would keep equal names apart: a leaked one
        // is then traceable to its test.
        let bridge = format!(
            "cri{}x{}",
            std::process::id() % 100_000,
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let c = Containerd::launch(Setup {
            cri: Some(cri_config()),
            files: vec![(
                "cni/conf/10-cri-test.conflist".into(),
                cni_conflist(&bridge),
            )],
            netns: Some(Netns::new("cri")),
        });
        for tar in [pause_tar(), image_tar()] {
            c.ctr(&[
                "-n",
                "k8s.io",
                "images",
                "import",
                tar.to_str().expect("utf-8"),
            ])
            .success();
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let socket = c.socket();
        // The URI is not used: every connection is the unix socket.
        let channel = rt
            .block_on(
                Endpoint::from_static("http://localhost").connect_with_connector(
                    tower::service_fn(move |_: Uri| {
                        let socket = socket.clone();
                        async move {
                            let stream = tokio::net::UnixStream::connect(socket).await?;
                            Ok::<_, std::io::Error>(TokioIo::new(stream))
                        }
                    }),
                ),
            )
            .expect("connect to containerd's CRI");
        let mut cri = Cri {
            rt,
            runtime: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
            containerd: Some(c),
            pod_netns: Vec::new(),
        };
        cri.wait_until_ready();
        cri
    }

    fn containerd(&self) -> &Containerd {
        self.containerd.as_ref().expect("containerd")
    }

    /// Waits until CRI reports its runtime and network ready (it loads the CNI config
    /// asynchronously) and knows both images (it learns of imported ones from containerd's
    /// events), so that RunPodSandbox neither fails on CNI nor pulls.
    fn wait_until_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let status = block(
                &self.rt,
                self.runtime.status(cri::StatusRequest { verbose: false }),
            );
            let ready = status
                .as_ref()
                .ok()
                .and_then(|s| s.status.as_ref())
                .is_some_and(|s| s.conditions.iter().all(|c| c.status));
            if ready {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "CRI not ready: {status:?}{}",
                self.diagnostics()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        for image in [PAUSE_IMAGE, IMAGE] {
            loop {
                let req = cri::ImageStatusRequest {
                    image: Some(image_spec(image)),
                    verbose: false,
                };
                let known = block(&self.rt, self.images.image_status(req))
                    .map(|r| r.image.is_some())
                    .unwrap_or(false);
                if known {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "CRI does not see {image}: {}",
                    self.diagnostics()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// containerd's log (its tail: it holds the shims' logs too) and our monitors' logs.
    fn diagnostics(&self) -> String {
        let c = self.containerd();
        let log = c.log();
        let mut from = log.len().saturating_sub(16_000);
        while !log.is_char_boundary(from) {
            from += 1;
        }
        format!(
            "\n=== containerd.log ({}, tail)\n{}\n=== monitors\n{}",
            c.dir.path().join("containerd.log").display(),
            &log[from..],
            c.monitor_logs()
        )
    }

    /// A pod's network namespace path, from the sandbox's OCI spec (verbose status).
    fn pod_netns_path(&mut self, pod: &str) -> Option<PathBuf> {
        let status = block(
            &self.rt,
            self.runtime
                .pod_sandbox_status(cri::PodSandboxStatusRequest {
                    pod_sandbox_id: pod.into(),
                    verbose: true,
                }),
        )
        .ok()?;
        let info: serde_json::Value = serde_json::from_str(status.info.get("info")?).ok()?;
        let path = info["runtimeSpec"]["linux"]["namespaces"]
            .as_array()?
            .iter()
            .find(|n| n["type"] == "network")?["path"]
            .as_str()?;
        Some(PathBuf::from(path))
    }
}

impl Drop for Cri {
    fn drop(&mut self) {
        // Pods a failed test left: stopped and removed as the kubelet would, so that CRI tears
        // their networks down and removes their namespaces.
        let pods = block(
            &self.rt,
            self.runtime
                .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None }),
        )
        .map(|r| r.items)
        .unwrap_or_default();
        for pod in pods {
            if let Some(p) = self.pod_netns_path(&pod.id) {
                self.pod_netns.push(p);
            }
            let id = pod.id.clone();
            let _ = block(
                &self.rt,
                self.runtime.stop_pod_sandbox(cri::StopPodSandboxRequest {
                    pod_sandbox_id: id.clone(),
                }),
            );
            let _ = block(
                &self.rt,
                self.runtime
                    .remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: id }),
            );
        }
        // containerd and whatever it still runs, its mounts, then the test's namespace.
        drop(self.containerd.take());
        for path in &self.pod_netns {
            if path.exists() {
                let _ = nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH);
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// An ExecSync answer with its output as text, for messages.
fn shown(r: &Result<cri::ExecSyncResponse, tonic::Status>) -> String {
    match r {
        Ok(r) => format!(
            "exit {}, stdout {:?}, stderr {:?}",
            r.exit_code,
            String::from_utf8_lossy(&r.stdout),
            String::from_utf8_lossy(&r.stderr)
        ),
        Err(e) => format!("error {e}"),
    }
}

/// `GET /` of `addr` over plain TCP: the response, head and body.
fn http_get(addr: SocketAddr) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

fn image_spec(image: &str) -> cri::ImageSpec {
    cri::ImageSpec {
        image: image.into(),
        ..Default::default()
    }
}

/// Requirements of the scenario that were not met: collected rather than asserted one by one,
/// so that a run with our shim tells every gap at once (the test still fails on any).
#[derive(Default)]
struct Unmet(Vec<String>);

impl Unmet {
    fn check(&mut self, ok: bool, what: impl Into<String>) {
        if !ok {
            let what = what.into();
            eprintln!("UNMET: {what}");
            self.0.push(what);
        }
    }
}

/// Times of the scenario's steps, printed at the end (for benchmarks to pick up).
struct Timeline {
    start: Instant,
    last: Instant,
    steps: Vec<(String, Duration)>,
}

impl Timeline {
    fn new() -> Timeline {
        let now = Instant::now();
        Timeline {
            start: now,
            last: now,
            steps: Vec::new(),
        }
    }

    fn step(&mut self, name: &str) {
        let now = Instant::now();
        self.steps.push((name.into(), now - self.last));
        self.last = now;
    }

    fn since_start(&self) -> Duration {
        self.start.elapsed()
    }

    fn print(&self, handler: &str) {
        for (name, d) in &self.steps {
            eprintln!("cri[{handler}] {name}: {d:?}");
        }
    }
}

/// What kubelet would send for a pod: names, a log directory, and the namespace modes kubelet
/// uses by default (network and IPC shared by the pod, PID per container).
/// The pod's memory limit in the sandbox config (above the VM's 512 MiB default, so that the
/// test tells a sized VM from a default one).
const POD_MEMORY_MIB: i64 = 768;

fn sandbox_config(name: &str, log_dir: &Path) -> cri::PodSandboxConfig {
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}-{}", std::process::id()),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: name.into(),
        log_directory: log_dir.display().to_string(),
        labels: HashMap::from([("app".to_string(), name.to_string())]),
        linux: Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(pod_namespaces()),
                ..Default::default()
            }),
            // What kubelet sends for a pod whose containers all have limits: their sum.
            resources: Some(cri::LinuxContainerResources {
                memory_limit_in_bytes: POD_MEMORY_MIB << 20,
                cpu_period: 100_000,
                cpu_quota: 200_000,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// kubelet's default namespace modes: network and IPC shared by the pod, PID per container.
fn pod_namespaces() -> cri::NamespaceOption {
    cri::NamespaceOption {
        network: cri::NamespaceMode::Pod.into(),
        pid: cri::NamespaceMode::Container.into(),
        ipc: cri::NamespaceMode::Pod.into(),
        ..Default::default()
    }
}

fn container_config(name: &str, command: &[&str]) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(image_spec(IMAGE)),
        command: command.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}.log"),
        linux: Some(cri::LinuxContainerConfig {
            security_context: Some(cri::LinuxContainerSecurityContext {
                namespace_options: Some(pod_namespaces()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The scenario a Kubernetes pod of two containers goes through, with `handler` as its
/// RuntimeClass handler: run the sandbox, create and start "srv" (httpd) and "cli" (sleep),
/// reach srv from cli on the pod's localhost, exec exit codes, the pod's CNI address, then stop
/// and remove the pod and check nothing of it is left.
/// The state CRI reports for container `id` (None if it has none to report).
fn container_state(cri: &mut Cri, id: &str) -> Option<i32> {
    block(
        &cri.rt,
        cri.runtime.container_status(cri::ContainerStatusRequest {
            container_id: id.to_string(),
            verbose: false,
        }),
    )
    .ok()
    .and_then(|r| r.status)
    .map(|s| s.state)
}

/// kill -9 of the shim that serves a pod's sandbox: containerd runs the shim's `delete`, which
/// ends the pod's VM; the pod's container is then reported exited, and the pod is stopped and
/// removed as usual (what is left afterwards is checked by the caller).
fn killed_sandbox_shim(cri: &mut Cri, handler: &str, log_dir: &Path, unmet: &mut Unmet) {
    let config = sandbox_config("victim", log_dir);
    let pod = block(
        &cri.rt,
        cri.runtime.run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: handler.into(),
        }),
    )
    .unwrap_or_else(|e| panic!("RunPodSandbox victim: {e}{}", cri.diagnostics()))
    .pod_sandbox_id;
    if let Some(p) = cri.pod_netns_path(&pod) {
        cri.pod_netns.push(p);
    }
    let id = block(
        &cri.rt,
        cri.runtime.create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(container_config("sleeper", &["sleep", "600"])),
            sandbox_config: Some(config),
        }),
    )
    .unwrap_or_else(|e| panic!("CreateContainer sleeper: {e}{}", cri.diagnostics()))
    .container_id;
    block(
        &cri.rt,
        cri.runtime.start_container(cri::StartContainerRequest {
            container_id: id.clone(),
        }),
    )
    .unwrap_or_else(|e| panic!("StartContainer sleeper: {e}{}", cri.diagnostics()));
    let vms = cri.containerd().qemus();
    let shims = common::pids_mentioning(&pod, "containerd-shim");
    unmet.check(
        shims.len() == 1,
        format!("one shim serves the victim's sandbox: {shims:?}"),
    );
    for pid in shims {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let exited = cri::ContainerState::ContainerExited.into();
    let state = loop {
        let state = container_state(cri, id.as_str());
        if state == Some(exited) || Instant::now() > deadline {
            break state;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    unmet.check(
        state == Some(exited),
        format!("the pod's container exits with its sandbox's shim: {state:?}"),
    );
    let left = cri.containerd().qemus();
    unmet.check(
        left + 1 == vms,
        format!("the pod's VM ended with its shim: {vms} VMs before, {left} after"),
    );
    let stopped = block(
        &cri.rt,
        cri.runtime.stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        }),
    );
    let removed = block(
        &cri.rt,
        cri.runtime
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: pod,
            }),
    );
    unmet.check(
        stopped.is_ok() && removed.is_ok(),
        format!("the victim pod stops and is removed: {stopped:?} {removed:?}"),
    );
}

fn pod_of_two_containers(handler: &str) {
    let mut cri = Cri::start();
    let ours = handler == "container";
    let mut unmet = Unmet::default();
    let log_dir = cri.containerd().dir.path().join("pod-logs");
    std::fs::create_dir_all(&log_dir).expect("log dir");
    let sandbox = sandbox_config("web", &log_dir);
    let mut time = Timeline::new();

    let pod = block(
        &cri.rt,
        cri.runtime.run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(sandbox.clone()),
            runtime_handler: handler.into(),
        }),
    )
    .unwrap_or_else(|e| panic!("RunPodSandbox: {e}{}", cri.diagnostics()))
    .pod_sandbox_id;
    time.step("RunPodSandbox");
    if let Some(p) = cri.pod_netns_path(&pod) {
        cri.pod_netns.push(p);
    }

    let mut ids = Vec::new();
    for (name, command) in [
        ("srv", &["httpd", "-f", "-p", "8080", "-h", "/www"][..]),
        ("cli", &["sleep", "3600"][..]),
    ] {
        let id = block(
            &cri.rt,
            cri.runtime.create_container(cri::CreateContainerRequest {
                pod_sandbox_id: pod.clone(),
                config: Some(container_config(name, command)),
                sandbox_config: Some(sandbox.clone()),
            }),
        )
        .unwrap_or_else(|e| panic!("CreateContainer {name}: {e}{}", cri.diagnostics()))
        .container_id;
        time.step(&format!("CreateContainer {name}"));
        ids.push((name, id));
    }
    for (name, id) in &ids {
        block(
            &cri.rt,
            cri.runtime.start_container(cri::StartContainerRequest {
                container_id: id.clone(),
            }),
        )
        .unwrap_or_else(|e| panic!("StartContainer {name}: {e}{}", cri.diagnostics()));
        time.step(&format!("StartContainer {name}"));
    }
    let to_running = time.since_start();
    eprintln!("cri[{handler}] RunPodSandbox to both containers running: {to_running:?}");

    for (name, id) in &ids {
        let state = container_state(&mut cri, id.as_str());
        unmet.check(
            state == Some(cri::ContainerState::ContainerRunning.into()),
            format!("ContainerStatus of {name}: RUNNING, got {state:?}"),
        );
    }
    if ours {
        // A pod is one VM: the sandbox and both containers in it.
        let vms = cri.containerd().qemus();
        unmet.check(vms == 1, format!("one VM for the pod, found {vms}"));
        // Sized by the pod's resources: 2 vCPUs, its memory over the 512 MiB default.
        let size = block(
            &cri.rt,
            cri.runtime.exec_sync(cri::ExecSyncRequest {
                container_id: ids[1].1.clone(),
                cmd: vec![
                    "sh".into(),
                    "-c".into(),
                    "grep -c ^processor /proc/cpuinfo; awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo"
                        .into(),
                ],
                timeout: 10,
            }),
        );
        let text = size
            .as_ref()
            .map(|r| String::from_utf8_lossy(&r.stdout).into_owned())
            .unwrap_or_default();
        let nums: Vec<i64> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
        unmet.check(
            matches!(nums[..], [2, mib] if mib > 600 && mib <= POD_MEMORY_MIB + 128),
            format!(
                "the pod's VM has 2 vCPUs and about {POD_MEMORY_MIB} MiB: {}",
                shown(&size)
            ),
        );
    }

    // What CRI asked of the runtime, for whoever reads a failure: the namespaces (paths to
    // join) of the sandbox's and a container's OCI spec, the pid CRI took for the sandbox, and
    // the annotations that tell a runtime which sandbox a container belongs to.
    let pod_info = block(
        &cri.rt,
        cri.runtime
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: pod.clone(),
                verbose: true,
            }),
    )
    .ok()
    .and_then(|r| serde_json::from_str::<serde_json::Value>(r.info.get("info")?).ok())
    .unwrap_or_default();
    let cli_info = block(
        &cri.rt,
        cri.runtime.container_status(cri::ContainerStatusRequest {
            container_id: ids[1].1.clone(),
            verbose: true,
        }),
    )
    .ok()
    .and_then(|r| serde_json::from_str::<serde_json::Value>(r.info.get("info")?).ok())
    .unwrap_or_default();
    eprintln!(
        "cri[{handler}] sandbox pid {}, namespaces {}; cli's namespaces {}, annotations {}",
        pod_info["pid"],
        pod_info["runtimeSpec"]["linux"]["namespaces"],
        cli_info["runtimeSpec"]["linux"]["namespaces"],
        cli_info["runtimeSpec"]["annotations"]
    );

    let (srv, cli) = (&ids[0].1, &ids[1].1);
    // httpd may not listen yet when its container runs: ask for a while.
    let get = "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 127.0.0.1 8080";
    let deadline = Instant::now() + Duration::from_secs(20);
    let answer = loop {
        let r = block(
            &cri.rt,
            cri.runtime.exec_sync(cri::ExecSyncRequest {
                container_id: cli.clone(),
                cmd: vec!["sh".into(), "-c".into(), get.into()],
                timeout: 10,
            }),
        );
        let ok = r.as_ref().is_ok_and(|r| {
            String::from_utf8_lossy(&r.stdout).contains(" 200 ") && r.exit_code == 0
        });
        if ok || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    time.step("ExecSync GET srv from cli");
    let body = answer.as_ref().ok().and_then(|r| {
        let text = String::from_utf8_lossy(&r.stdout).into_owned();
        text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
    });
    unmet.check(
        body.as_deref() == Some(PAGE),
        format!(
            "cli reaches srv on the pod's localhost:8080: {}",
            shown(&answer)
        ),
    );

    // kubelet's UpdateContainerResources reaches the container's cgroup (the shim's Update).
    let updated = block(
        &cri.rt,
        cri.runtime
            .update_container_resources(cri::UpdateContainerResourcesRequest {
                container_id: cli.clone(),
                linux: Some(cri::LinuxContainerResources {
                    memory_limit_in_bytes: 200 << 20,
                    ..Default::default()
                }),
                ..Default::default()
            }),
    );
    let max = block(
        &cri.rt,
        cri.runtime.exec_sync(cri::ExecSyncRequest {
            container_id: cli.clone(),
            cmd: vec!["cat".into(), "/sys/fs/cgroup/memory.max".into()],
            timeout: 10,
        }),
    );
    // (runc's containers here see no cgroup tree of their own: only ours are read back.)
    unmet.check(
        updated.is_ok()
            && (!ours
                || max.as_ref().is_ok_and(|r| {
                    String::from_utf8_lossy(&r.stdout).trim() == (200u64 << 20).to_string()
                })),
        format!(
            "UpdateContainerResources sets memory.max to 200 MiB: {:?}; {}",
            updated.err(),
            shown(&max)
        ),
    );
    time.step("UpdateContainerResources");

    let failing = block(
        &cri.rt,
        cri.runtime.exec_sync(cri::ExecSyncRequest {
            container_id: srv.clone(),
            cmd: vec!["sh".into(), "-c".into(), "echo oops >&2; exit 3".into()],
            timeout: 10,
        }),
    );
    unmet.check(
        failing
            .as_ref()
            .is_ok_and(|r| r.exit_code == 3 && r.stderr == b"oops\n"),
        format!(
            "ExecSync reports exit code 3 and stderr \"oops\": {}",
            shown(&failing)
        ),
    );
    time.step("ExecSync exit 3");

    let status = block(
        &cri.rt,
        cri.runtime
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: pod.clone(),
                verbose: false,
            }),
    )
    .unwrap_or_else(|e| panic!("PodSandboxStatus: {e}{}", cri.diagnostics()));
    let ip = status
        .status
        .as_ref()
        .and_then(|s| s.network.as_ref())
        .map(|n| n.ip.clone())
        .unwrap_or_default();
    unmet.check(
        ip.starts_with(SUBNET_PREFIX),
        format!("the pod has an address in {SUBNET}: {ip:?}"),
    );
    // The address is the pod's: its containers have it, and the node reaches them at it
    // (kubelet's probes, Services), through CNI's bridge in the test's namespace.
    let addrs = block(
        &cri.rt,
        cri.runtime.exec_sync(cri::ExecSyncRequest {
            container_id: cli.clone(),
            cmd: vec!["ip".into(), "-o".into(), "-4".into(), "addr".into()],
            timeout: 10,
        }),
    );
    unmet.check(
        !ip.is_empty()
            && addrs
                .as_ref()
                .is_ok_and(|r| String::from_utf8_lossy(&r.stdout).contains(&format!("inet {ip}/"))),
        format!(
            "the containers have the pod's address {ip}: `ip -o -4 addr` in cli: {}",
            shown(&addrs)
        ),
    );
    let from_node = match (ip.parse(), cri.containerd().netns()) {
        (Ok(addr), Some(ns)) => ns.run(move || http_get(SocketAddr::new(addr, 8080))),
        _ => Err(std::io::Error::other("no pod address")),
    };
    unmet.check(
        from_node
            .as_ref()
            .is_ok_and(|r| r.ends_with(&format!("\r\n\r\n{PAGE}"))),
        format!("the node reaches srv at {ip}:8080: {from_node:?}"),
    );
    time.step("pod address checks");
    let ready = status.status.as_ref().map(|s| s.state);
    unmet.check(
        ready == Some(cri::PodSandboxState::SandboxReady.into()),
        format!("the pod is SANDBOX_READY: {ready:?}"),
    );

    let shims = cri.containerd().shims().len();
    eprintln!("cri[{handler}] shim processes for the pod: {shims}");
    // The monitors' logs go with their containers: keep them for the report.
    let running = if unmet.0.is_empty() {
        String::new()
    } else {
        cri.containerd().monitor_logs()
    };

    block(
        &cri.rt,
        cri.runtime.stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        }),
    )
    .unwrap_or_else(|e| panic!("StopPodSandbox: {e}{}", cri.diagnostics()));
    time.step("StopPodSandbox");
    block(
        &cri.rt,
        cri.runtime
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: pod.clone(),
            }),
    )
    .unwrap_or_else(|e| panic!("RemovePodSandbox: {e}{}", cri.diagnostics()));
    time.step("RemovePodSandbox");

    if ours {
        killed_sandbox_shim(&mut cri, handler, &log_dir, &mut unmet);
        // A hostNetwork pod is refused with the reason, and leaves nothing (checked below).
        let mut host = sandbox_config("hostnet", &log_dir);
        if let Some(ns) = host
            .linux
            .as_mut()
            .and_then(|l| l.security_context.as_mut())
            .and_then(|c| c.namespace_options.as_mut())
        {
            ns.network = cri::NamespaceMode::Node.into();
        }
        let refused = block(
            &cri.rt,
            cri.runtime.run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(host),
                runtime_handler: handler.into(),
            }),
        );
        unmet.check(
            refused
                .as_ref()
                .is_err_and(|e| e.message().contains("hostNetwork pods cannot run in a VM")),
            format!(
                "RunPodSandbox of a hostNetwork pod fails and says why: {:?}",
                refused.map(|r| r.pod_sandbox_id)
            ),
        );
    }

    // Nothing of the pod is left: CRI's records, containerd's tasks, the shims, the VMs,
    // the pod's network namespace.
    let pods = block(
        &cri.rt,
        cri.runtime
            .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None }),
    )
    .map(|r| r.items.len());
    unmet.check(matches!(pods, Ok(0)), format!("no pods left: {pods:?}"));
    let containers = block(
        &cri.rt,
        cri.runtime
            .list_containers(cri::ListContainersRequest { filter: None }),
    )
    .map(|r| r.containers.len());
    unmet.check(
        matches!(containers, Ok(0)),
        format!("no containers left: {containers:?}"),
    );
    let tasks = cri.containerd().ctr(&["-n", "k8s.io", "task", "ls", "-q"]);
    unmet.check(
        tasks.stdout.trim().is_empty(),
        format!("no containerd tasks left: {tasks:?}"),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while (!cri.containerd().shims().is_empty() || cri.containerd().qemus() > 0)
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    let shims = cri.containerd().shims();
    unmet.check(
        shims.is_empty(),
        format!("no shim processes left: {shims:?}"),
    );
    let vms = cri.containerd().qemus();
    unmet.check(vms == 0, format!("no VMs left: {vms}"));
    for p in &cri.pod_netns {
        unmet.check(
            !p.exists(),
            format!("the pod's network namespace {} is gone", p.display()),
        );
    }
    time.print(handler);
    assert!(
        unmet.0.is_empty(),
        "cri[{handler}] requirements not met:\n  {}{}\n=== monitors while the pod ran\n{running}",
        unmet.0.join("\n  "),
        cri.diagnostics()
    );
}

/// The harness proven on runc: containerd's own runtime for the same pod.
#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn cri_pod_with_runc() {
    pod_of_two_containers("runc");
}

/// The same pod with our shim as the RuntimeClass handler: the whole pod in one VM (the
/// sandbox becomes our pod, its containers run in the pod's VM), on the pod's CNI address
/// (the VM takes over eth0 of the sandbox's network namespace through a tap and tc redirects).
#[test]
#[cfg_attr(
    not(container_testenv),
    ignore = "needs root, QEMU and network namespaces: run scripts/test.sh"
)]
fn cri_pod_with_our_shim() {
    pod_of_two_containers("container");
}
