//! `create`: write a new container's record from a prepared [`CreateRequest`].

use std::path::PathBuf;

use chrono::Utc;

use super::ContainerError;
use crate::spec::{combine, entrypoint_and_cmd, ImageConfig, ProcessOptions};
use crate::state::{ContainerConfig, ContainerRecord, Status, Store, VmOptions};

/// What `create` writes; made by [`super::prepare`] (the image is resolved and its rootfs
/// cached).
#[derive(Debug, Clone)]
pub struct CreateRequest {
    /// `--name`.
    pub name: Option<String>,
    /// Normalised image reference.
    pub image: String,
    /// Manifest digest.
    pub image_digest: String,
    /// The image's config.
    pub image_config: ImageConfig,
    /// The cached ext4 rootfs of the image (empty with `rootfs_dir`).
    pub rootfs: PathBuf,
    /// A host directory as the root filesystem instead of the image's (see
    /// [`super::ContainerOptions::rootfs_dir`]).
    pub rootfs_dir: Option<PathBuf>,
    /// Process flags.
    pub process: ProcessOptions,
    /// VM flags.
    pub vm: VmOptions,
    /// `--rm`.
    pub auto_remove: bool,
    /// Networks in interface order (empty: `--network none`).
    pub networks: Vec<String>,
    /// Aliases and fixed addresses by network (checked against `networks`).
    pub endpoints: std::collections::BTreeMap<String, net::EndpointConfig>,
    /// `-p` values.
    pub publish: Vec<super::PortSpec>,
    /// Volumes and tmpfs mounts (`-v`, `--mount`, `--tmpfs`).
    pub mounts: Vec<crate::volume::MountSpec>,
    /// `--publish-socket` values.
    pub publish_sockets: Vec<crate::sockets::PublishSocket>,
    /// `--read-only`.
    pub read_only: bool,
    /// `--cpus`, `-m`, `--pids-limit` (the VM in `vm` is sized for them already).
    pub resources: crate::resources::ResourceLimits,
    /// `--hostname` (default: the id's first 12 digits).
    pub hostname: Option<String>,
    /// `--dns*`.
    pub dns: crate::netconf::DnsConfig,
    /// `--add-host`.
    pub extra_hosts: Vec<crate::netconf::ExtraHost>,
    /// `--label`, `--label-file`: the container's own labels (the image's are in
    /// `image_config`).
    pub labels: crate::labels::Labels,

    /// `--stop-signal` (checked); None: the image's.
    pub stop_signal: Option<String>,
    /// `--stop-timeout`.
    pub stop_timeout: Option<u64>,
    /// `--restart` (checked against `--rm`).
    pub restart: crate::restart::RestartPolicy,
    /// The container's own health check (`--health-*`, checked); the image's fills in what
    /// it leaves out.
    pub healthcheck: Option<oci::spec::HealthConfig>,
    /// `--sysctl` (checked).
    pub sysctls: std::collections::BTreeMap<String, String>,
    /// `--shm-size` in bytes (None: the default).
    pub shm_size: Option<u64>,
    /// `--cgroupns host`.
    pub cgroupns_host: bool,
    /// `--device` (parsed).
    pub devices: Vec<crate::devices::DeviceMapping>,
    /// `--masked-path`.
    pub masked_paths: Vec<String>,
    /// `--read-only-path`.
    pub readonly_paths: Vec<String>,
    /// `--volumes-from` as written (their mounts are in `mounts` already).
    pub volumes_from: Vec<String>,
    /// `--log-driver`, `--log-opt` (checked).
    pub log: crate::logs::LogConfig,
    /// Its place in a pod (`--pod`: a member; [`crate::pod`] makes the infra).
    pub pod: Option<crate::state::PodRole>,
    /// A network namespace whose interface the VM takes over (the shim's CRI sandbox).
    pub netns: Option<PathBuf>,
}

/// Writes a new container record (status `created`).
pub(crate) fn create_record(
    store: &Store,
    req: CreateRequest,
) -> Result<ContainerRecord, ContainerError> {
    // Combine once with a placeholder hostname to fail early, before taking a name.
    req.restart
        .check_auto_remove(req.auto_remove)
        .map_err(ContainerError::RestartPolicy)?;
    let lookup = |k: &str| std::env::var(k).ok();
    combine(&req.image_config, &req.process, "x", &lookup)?;
    if let Some(h) = &req.hostname {
        crate::netconf::check_hostname(h)?;
    }
    let mut spec_err = None;
    let record = store.create(req.name.as_deref(), |id, name| {
        let hostname = req.hostname.clone().unwrap_or_else(|| id[..12].to_string());
        let process = match combine(&req.image_config, &req.process, &hostname, &lookup) {
            Ok(p) => p,
            Err(e) => {
                spec_err = Some(e);
                Default::default()
            }
        };
        ContainerRecord {
            id: id.to_string(),
            name: name.to_string(),
            image: req.image.clone(),
            image_digest: req.image_digest.clone(),
            status: Status::Created,
            exit_code: None,
            exit_reason: None,
            oom_killed: false,
            paused: false,
            monitor_pid: None,
            vm_pid: None,
            vm_template: None,
            vm_prebooted: false,
            created: Utc::now(),
            started: None,
            finished: None,
            config: ContainerConfig {
                process,
                vm: req.vm.clone(),
                rootfs: req.rootfs.clone(),
                rootfs_dir: req.rootfs_dir.clone(),
                auto_remove: req.auto_remove,
                hostname,
                networks: req.networks.clone(),
                endpoints: req.endpoints.clone(),
                publish: req.publish.clone(),
                mounts: req.mounts.clone(),
                publish_sockets: req.publish_sockets.clone(),
                read_only: req.read_only,
                resources: req.resources,
                privileged: req.process.privileged,
                dns: req.dns.clone(),
                extra_hosts: req.extra_hosts.clone(),
                entrypoint: Some(entrypoint_and_cmd(&req.image_config, &req.process).0),
                labels: merge_labels(&req.image_config.labels, &req.labels),
                exposed_ports: req.image_config.exposed_ports.clone(),
                stop_signal: req.stop_signal.clone().or_else(|| {
                    Some(req.image_config.stop_signal.clone()).filter(|s| !s.is_empty())
                }),
                stop_timeout: req.stop_timeout,
                restart: req.restart,
                healthcheck: crate::health::merge(
                    req.healthcheck.clone(),
                    req.image_config.healthcheck.as_ref(),
                ),
                sysctls: req.sysctls.clone(),
                shm_size: req.shm_size,
                cgroupns_host: req.cgroupns_host,
                devices: req.devices.clone(),
                masked_paths: req.masked_paths.clone(),
                readonly_paths: req.readonly_paths.clone(),
                volumes_from: req.volumes_from.clone(),
                log: req.log.clone(),
                pod: req.pod.clone(),
                netns: req.netns.clone(),
            },
            networks: Vec::new(),
            ports: Vec::new(),
            restart_count: 0,
            stopped_by_user: false,
            health: None,
        }
    })?;
    if let Some(e) = spec_err {
        let _ = store.remove(&record.id);
        return Err(e.into());
    }
    Ok(record)
}

/// docker's `Config.Labels` of a new container: the image's, with the container's own
/// replacing them key by key.
fn merge_labels(
    image: &std::collections::BTreeMap<String, String>,
    own: &crate::labels::Labels,
) -> crate::labels::Labels {
    let mut out = image.clone();
    out.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
    out
}

#[cfg(test)]
mod tests {
    use super::merge_labels;

    #[test]
    fn the_containers_labels_win_over_the_images() {
        let image = [("a", "image"), ("b", "image")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into();
        let own = [("b", "own"), ("c", "own")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into();
        let merged: Vec<_> = merge_labels(&image, &own).into_iter().collect();
        assert_eq!(
            merged,
            [("a", "image"), ("b", "own"), ("c", "own")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
        );
    }
}
