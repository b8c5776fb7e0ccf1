//! What a container looks like from outside: its networks, its `list` summary and its
//! `inspect` document.

use serde::Serialize;
use serde_json::{json, Value};

use super::Container;
use crate::docker::{ContainerJson, Lease};
use crate::state::{ContainerRecord, MountSpec, Status};
use crate::volume::VolumeStore;

/// One line of `list`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Its address on its first network, without prefix.
    pub ip: Option<String>,
    /// Full id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Image reference.
    pub image: String,
    /// Status.
    pub status: Status,
    /// The main process's arguments.
    pub command: Vec<String>,
    /// When it was created.
    pub created: chrono::DateTime<chrono::Utc>,
    /// Exit code of its last run.
    pub exit_code: Option<i32>,
    /// Its VM is frozen (`pause`); `status` stays `running`, as docker's `Running`.
    pub paused: bool,
    /// Published ports with their bound host ports.
    pub ports: Vec<net::ports::PortSpec>,
    /// Manifest digest of its image.
    pub image_digest: String,
    /// Its labels: its image's, overridden by its own (`--label`), as docker merges them.
    pub labels: crate::labels::Labels,
    /// Its networks in interface order (empty: `--network none`).
    pub networks: Vec<String>,
    /// Its volumes, bind mounts and tmpfs mounts.
    pub mounts: Vec<MountSpec>,
    /// Its health status, once it ran with a health check (docker's `none` otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<crate::health::HealthStatus>,
}

impl Summary {
    /// docker's `State`: its status, or `paused` for a running container whose VM is frozen.
    pub fn state(&self) -> String {
        if self.paused {
            "paused".to_string()
        } else {
            self.status.to_string()
        }
    }
}

impl Container {
    /// Its networks in interface order, as `{network, address, gateway, mac}` objects.
    pub fn networks(&self) -> Vec<Value> {
        let nets = net::Networks::open(self.rt.root()).ok();
        networks_of(nets.as_ref(), &self.record)
    }

    /// Its output in docker's json-file log format.
    pub fn log_path(&self) -> std::path::PathBuf {
        self.rt.store().dir_of(self.id()).join("container.log")
    }

    /// Its VM's serial console.
    pub fn boot_log_path(&self) -> std::path::PathBuf {
        self.rt.store().dir_of(self.id()).join("boot.log")
    }

    /// Its `list` line.
    pub fn summary(&self) -> Summary {
        let r = &self.record;
        Summary {
            ip: first_ip(&self.networks()),
            id: r.id.clone(),
            name: r.name.clone(),
            image: r.image.clone(),
            status: r.status,
            command: r.config.process.args.clone(),
            created: r.created,
            exit_code: r.exit_code,
            paused: r.paused,
            ports: r.ports.clone(),
            image_digest: r.image_digest.clone(),
            labels: r.config.labels.clone(),
            networks: r.config.networks.clone(),
            mounts: r.config.mounts.clone(),
            health: r.health.as_ref().map(|h| h.status),
        }
    }

    /// Its `inspect` document.
    pub fn inspect(&self) -> Value {
        let r = &self.record;
        json!({
            "id": r.id,
            "name": r.name,
            "image": r.image,
            "imageDigest": r.image_digest,
            "status": r.status,
            "exitCode": r.exit_code,
            "exitReason": r.exit_reason,
            "restartCount": r.restart_count,
            "oomKilled": r.oom_killed,
            "monitorPid": r.monitor_pid,
            "vmPid": r.vm_pid,
            "vmTemplate": r.vm_template,
            "vmPrebooted": r.vm_prebooted,
            "created": r.created,
            "started": r.started,
            "finished": r.finished,
            "config": r.config,
            "networks": self.networks(),
            "ports": r.ports,
            "logPath": self.log_path(),
            "bootLogPath": self.boot_log_path(),
        })
    }

    /// Its document as `docker inspect` shows it (see [`crate::docker`]).
    pub fn docker_inspect(&self) -> ContainerJson {
        let leases: Vec<Lease> = self.networks().iter().map(Lease::from_json).collect();
        // Opened only for a container with volumes: opening creates the store's directory.
        let volumes = self
            .record
            .config
            .mounts
            .iter()
            .any(|m| matches!(m, MountSpec::Volume { .. }))
            .then(|| VolumeStore::open(self.rt.root()).ok())
            .flatten();
        let source = |name: &str| volumes.as_ref().map(|v| v.disk(name)).unwrap_or_default();
        ContainerJson::new(&self.record, &leases, &self.log_path(), &source)
    }

    /// What `container inspect` prints: [`Container::inspect`]'s keys and, beside them,
    /// docker's ([`Container::docker_inspect`]), so that docker's `-f` templates work on it.
    /// The two sets do not collide: docker's keys are capitalised.
    pub fn inspect_document(&self) -> Value {
        let mut doc = self.inspect();
        if let (Value::Object(ours), Ok(Value::Object(docker))) =
            (&mut doc, serde_json::to_value(self.docker_inspect()))
        {
            for (k, v) in docker {
                ours.entry(k).or_insert(v);
            }
        }
        doc
    }
}

/// The `networks` objects of a container: its leases in interface order.
fn networks_of(nets: Option<&net::Networks>, r: &ContainerRecord) -> Vec<Value> {
    if r.config.networks.is_empty() {
        return Vec::new();
    }
    let Some(attachments) = nets.and_then(|n| n.attachments(&r.id).ok()) else {
        return r.networks.clone();
    };
    if attachments.is_empty() {
        // The rootless fallback (QEMU user-mode networking) records its interface itself.
        return r.networks.clone();
    }
    r.config
        .networks
        .iter()
        .filter_map(|name| attachments.iter().find(|a| &a.network == name))
        .map(|a| {
            let mut v = json!({
                "network": a.network,
                "networkId": a.network_id,
                "address": a.address.to_string(),
                "gateway": a.gateway.to_string(),
                "mac": a.mac,
            });
            if let (Some(address6), Some(map)) = (a.address6, v.as_object_mut()) {
                map.insert("ipv6Address".into(), json!(address6.to_string()));
                let gateway6 = a.gateway6.map(|g| g.to_string()).unwrap_or_default();
                map.insert("ipv6Gateway".into(), json!(gateway6));
            }
            v
        })
        .collect()
}

/// The address on the first network, without prefix.
fn first_ip(networks: &[Value]) -> Option<String> {
    let address = networks.first()?.get("address")?.as_str()?;
    Some(address.split('/').next().unwrap_or(address).to_string())
}
