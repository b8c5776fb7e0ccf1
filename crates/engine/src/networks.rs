//! Network endpoints: create, list, inspect, delete, prune, connect and disconnect, each a
//! call of the runtime's [`runtime::network::Networks`] (or of [`runtime::Container`] for
//! connect), in docker's JSON shapes.
//!
//! Every network is a Linux bridge of ours (driver `bridge`, scope `local`). docker's default
//! network is called `bridge`; ours keeps its own name, [`DEFAULT_NETWORK`]
//! (`default`), which is what listings and container documents show; the name `bridge` is
//! read as that network wherever a client names one (`/networks/bridge`, `NetworkMode`,
//! connect), so clients that ask for docker's default get ours. A network is named by its
//! name, its id or a unique prefix of its id.

use std::collections::BTreeMap;

use hyper::StatusCode;
use runtime::filter::{FilterKind, Filters};
use runtime::network::{NetworkError, NetworkInfo, NetworkSpec, DEFAULT_NETWORK};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::create::nullable;
use crate::error::{line, ApiError};
use crate::http::{self, Answer, Req};
use crate::routes::no_content;
use crate::Engine;

/// docker's name for the default network.
pub const DOCKER_DEFAULT: &str = "bridge";

/// The network a client means by `key`: docker's `bridge` is our default network.
pub fn key(key: &str) -> &str {
    if key == DOCKER_DEFAULT {
        DEFAULT_NETWORK
    } else {
        key
    }
}

impl From<NetworkError> for ApiError {
    fn from(e: NetworkError) -> ApiError {
        let message = line(&e);
        match e {
            NetworkError::NotFound(_) => ApiError::not_found(message),
            NetworkError::AlreadyExists(_) => ApiError::conflict(message),
            // docker answers 403 for a network that still has endpoints and for its
            // pre-defined names (libnetwork's ActiveEndpointsError is Forbidden).
            NetworkError::InUse { .. } | NetworkError::Reserved(_) => {
                ApiError::new(StatusCode::FORBIDDEN, message)
            }
            NetworkError::Config(_)
            | NetworkError::Ambiguous(_)
            | NetworkError::Overlap { .. }
            | NetworkError::BadMode(_)
            | NetworkError::Allocate(_)
            | NetworkError::DefaultSubnet(_)
            | NetworkError::NoFreeSubnet => ApiError::bad_request(message),
            _ => ApiError::internal(message),
        }
    }
}

/// `POST /networks/create` body (the fields this server reads).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CreateBody {
    /// The name.
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    /// Only `bridge` (or empty).
    #[serde(deserialize_with = "nullable")]
    pub driver: String,
    /// Refuse a name in use (always done here: names are unique).
    #[serde(deserialize_with = "nullable")]
    pub check_duplicate: bool,
    /// No egress.
    #[serde(deserialize_with = "nullable")]
    pub internal: bool,
    /// IPv6 as well (an IPv6 pool in `IPAM.Config`, else a random unique local /64).
    #[serde(rename = "EnableIPv6", deserialize_with = "nullable")]
    pub enable_ipv6: bool,
    /// Subnet and gateway.
    #[serde(rename = "IPAM")]
    pub ipam: Option<Ipam>,
    /// Driver options: refused when given.
    pub options: Option<BTreeMap<String, String>>,
    /// Labels.
    pub labels: Option<BTreeMap<String, String>>,
}

/// `IPAM` of a create body.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Ipam {
    /// `default` (or empty) only.
    #[serde(deserialize_with = "nullable")]
    pub driver: String,
    /// At most one IPv4 and one IPv6 pool.
    pub config: Option<Vec<IpamPool>>,
    /// IPAM driver options: refused when given.
    pub options: Option<BTreeMap<String, String>>,
}

/// One pool of `IPAM.Config`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct IpamPool {
    /// CIDR.
    #[serde(deserialize_with = "nullable")]
    pub subnet: String,
    /// Gateway address.
    #[serde(deserialize_with = "nullable")]
    pub gateway: String,
    /// A sub-range: refused when given.
    #[serde(rename = "IPRange", deserialize_with = "nullable")]
    pub ip_range: String,
    /// Reserved addresses: refused when given.
    pub aux_address: Option<BTreeMap<String, String>>,
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::bad_request(message)
}

/// The runtime's spec for a create body, refusing what our bridges cannot honour.
pub fn spec(body: CreateBody) -> Result<NetworkSpec, ApiError> {
    if body.name.is_empty() {
        return Err(bad("network name is required"));
    }
    if [DOCKER_DEFAULT, "none", "host"].contains(&body.name.as_str()) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "{} is a pre-defined network and cannot be created",
                body.name
            ),
        ));
    }
    if !matches!(body.driver.as_str(), "" | "bridge") {
        return Err(bad(format!(
            "network driver {:?} is not supported: every network here is a Linux bridge",
            body.driver
        )));
    }
    if body.options.as_ref().is_some_and(|o| !o.is_empty()) {
        return Err(bad("network driver options are not supported"));
    }
    let mut spec = NetworkSpec {
        name: body.name,
        internal: body.internal,
        ipv6: body.enable_ipv6,
        labels: body.labels.unwrap_or_default(),
        ..Default::default()
    };
    let ipam = body.ipam.unwrap_or_default();
    if !matches!(ipam.driver.as_str(), "" | "default") {
        return Err(bad(format!(
            "IPAM driver {:?} is not supported",
            ipam.driver
        )));
    }
    if ipam.options.as_ref().is_some_and(|o| !o.is_empty()) {
        return Err(bad("IPAM options are not supported"));
    }
    for pool in ipam.config.unwrap_or_default() {
        if !pool.ip_range.is_empty() || pool.aux_address.is_some_and(|a| !a.is_empty()) {
            return Err(bad("IPRange and AuxAddress are not supported"));
        }
        let subnet = match pool.subnet.as_str() {
            "" => None,
            s => Some(
                s.parse::<runtime::network::IpNet>()
                    .map_err(|_| bad(format!("invalid subnet {s:?}")))?,
            ),
        };
        let gateway = match pool.gateway.as_str() {
            "" => None,
            g => Some(
                g.parse::<std::net::IpAddr>()
                    .map_err(|_| bad(format!("invalid gateway {g:?}")))?,
            ),
        };
        let one_per_family = || bad("a network has at most one IPv4 and one IPv6 subnet here");
        match (subnet, gateway) {
            (None, Some(_)) => return Err(bad("a gateway needs its subnet")),
            (None, None) => {}
            (Some(runtime::network::IpNet::V4(s)), g) => {
                if spec.subnet.replace(s).is_some() {
                    return Err(one_per_family());
                }
                spec.gateway = match g {
                    None => None,
                    Some(std::net::IpAddr::V4(g)) => Some(g),
                    Some(g) => return Err(bad(format!("gateway {g} is not in subnet {s}"))),
                };
            }
            (Some(runtime::network::IpNet::V6(s)), g) => {
                if spec.subnet6.replace(s).is_some() {
                    return Err(one_per_family());
                }
                spec.gateway6 = match g {
                    None => None,
                    Some(std::net::IpAddr::V6(g)) => Some(g),
                    Some(g) => return Err(bad(format!("gateway {g} is not in subnet {s}"))),
                };
            }
        }
    }
    Ok(spec)
}

/// `POST /networks/create`.
pub async fn create(engine: &Engine, mut req: Req) -> Answer {
    let body: CreateBody = req.json().await?;
    let spec = spec(body)?;
    let config = engine.runtime().network_create(&spec)?;
    Ok(http::json(
        StatusCode::CREATED,
        &json!({"Id": config.id, "Warning": ""}),
    ))
}

/// docker's document of a network; `containers` adds the `Containers` map (inspect), with
/// each container's name from the runtime's records (`names`: id → name).
fn document(n: &NetworkInfo, containers: bool) -> Value {
    let c = &n.config;
    let mut pools = vec![json!({"Subnet": c.subnet.to_string(), "Gateway": c.gateway.to_string()})];
    if let (Some(s), Some(g)) = (c.subnet6, c.gateway6) {
        pools.push(json!({"Subnet": s.to_string(), "Gateway": g.to_string()}));
    }
    let mut doc = json!({
        "Name": c.name,
        "Id": c.id,
        "Created": c.created,
        "Scope": "local",
        "Driver": "bridge",
        "EnableIPv6": c.subnet6.is_some(),
        "IPAM": {
            "Driver": "default",
            "Options": {},
            "Config": pools,
        },
        "Internal": c.internal,
        "Attachable": true,
        "Ingress": false,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": false,
        "Containers": {},
        "Options": {},
        "Labels": c.labels,
    });
    if containers {
        let map: serde_json::Map<String, Value> = n
            .containers
            .iter()
            .map(|e| {
                let entry = json!({
                    "Name": e.name.clone().unwrap_or_default(),
                    "EndpointID": runtime::docker::endpoint_id(&c.id, &e.id),
                    "MacAddress": e.mac,
                    "IPv4Address": e.address.to_string(),
                    "IPv6Address": e.address6.map(|a| a.to_string()).unwrap_or_default(),
                });
                (e.id.clone(), entry)
            })
            .collect();
        doc["Containers"] = Value::Object(map);
    }
    doc
}

fn filters(req: &Req) -> Result<Filters, ApiError> {
    Ok(match req.q("filters").filter(|f| !f.is_empty()) {
        Some(json) => Filters::from_json(FilterKind::Networks, &docker_names(json))?,
        None => Filters::new(FilterKind::Networks),
    })
}

/// A filter's `name=bridge` is docker's default network: ours.
fn docker_names(json: &str) -> String {
    let Ok(mut v) = serde_json::from_str::<Value>(json) else {
        return json.to_string();
    };
    let ours = Value::String(DEFAULT_NETWORK.to_string());
    match v.get_mut("name") {
        Some(Value::Array(names)) => {
            for n in names
                .iter_mut()
                .filter(|n| n.as_str() == Some(DOCKER_DEFAULT))
            {
                *n = ours.clone();
            }
        }
        Some(Value::Object(set)) => {
            if let Some(on) = set.remove(DOCKER_DEFAULT) {
                set.insert(DEFAULT_NETWORK.to_string(), on);
            }
        }
        _ => {}
    }
    v.to_string()
}

/// `GET /networks?filters=`.
pub fn list(engine: &Engine, req: &Req) -> Answer {
    let filters = filters(req)?;
    let rows: Vec<Value> = engine
        .runtime()
        .networks()?
        .list()?
        .iter()
        .filter(|n| filters.matches_network(n))
        .map(|n| document(n, false))
        .collect();
    Ok(http::json(StatusCode::OK, &rows))
}

/// `GET /networks/{id}`.
pub fn inspect(engine: &Engine, id: &str) -> Answer {
    let info = engine.runtime().networks()?.inspect(key(id))?;
    Ok(http::json(StatusCode::OK, &document(&info, true)))
}

/// `DELETE /networks/{id}`: refused (403, as docker) for the default network and for one
/// containers still have a place on.
pub fn delete(engine: &Engine, id: &str) -> Answer {
    let nets = engine.runtime().networks()?;
    let config = nets.resolve(key(id))?;
    if config.name == DEFAULT_NETWORK {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "{} is a pre-defined network and cannot be removed",
                config.name
            ),
        ));
    }
    engine.runtime().network_delete(&config.id)?;
    no_content()
}

/// `POST /networks/prune?filters=`.
pub fn prune(engine: &Engine, req: &Req) -> Answer {
    let pruned = engine.runtime().network_prune(&filters(req)?)?;
    Ok(http::json(
        StatusCode::OK,
        &json!({ "NetworksDeleted": pruned }),
    ))
}

/// `POST /networks/{id}/connect` body.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ConnectBody {
    /// Container name or id.
    #[serde(deserialize_with = "nullable")]
    pub container: String,
    /// Aliases and address on the network.
    pub endpoint_config: Option<crate::create::EndpointSettings>,
    /// disconnect: docker's force (for a container that is gone); read and unused, as a
    /// stopped container always leaves cleanly here.
    #[serde(deserialize_with = "nullable")]
    pub force: bool,
}

/// `POST /networks/{id}/connect`: a stopped container gains the network; a running one is
/// refused (409), as its VM cannot hot-plug an interface.
pub async fn connect(engine: &Engine, id: &str, mut req: Req) -> Answer {
    let body: ConnectBody = req.json().await?;
    let endpoint = match body.endpoint_config {
        Some(e) => e.endpoint()?,
        None => Default::default(),
    };
    let mut c = engine.runtime().container(&body.container)?;
    let net_key = key(id).to_string();
    c.connect_network(&net_key, endpoint)?;
    Ok(http::empty(StatusCode::OK))
}

/// `POST /networks/{id}/disconnect`.
pub async fn disconnect(engine: &Engine, id: &str, mut req: Req) -> Answer {
    let body: ConnectBody = req.json().await?;
    let _ = body.force;
    let mut c = engine.runtime().container(&body.container)?;
    c.disconnect_network(key(id))?;
    Ok(http::empty(StatusCode::OK))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<NetworkSpec, ApiError> {
        spec(serde_json::from_str(body).unwrap())
    }

    #[test]
    fn a_create_body_becomes_a_spec_or_a_400() {
        let s = parse(
            r#"{"Name":"back","Driver":"bridge","CheckDuplicate":true,"Internal":true,
                "IPAM":{"Driver":"default","Config":[{"Subnet":"10.7.0.0/24","Gateway":"10.7.0.254"}]},
                "Labels":{"a":"b"},"Options":{},"EnableIPv6":false,"Attachable":null}"#,
        )
        .unwrap();
        assert_eq!(s.name, "back");
        assert!(s.internal);
        assert_eq!(s.subnet.unwrap().to_string(), "10.7.0.0/24");
        assert_eq!(s.gateway.unwrap().to_string(), "10.7.0.254");
        assert_eq!(s.labels["a"], "b");
        // docker-py sends nulls for what the caller left out.
        let s = parse(r#"{"Name":"n","Driver":null,"IPAM":null,"Options":null,"Labels":null}"#)
            .unwrap();
        assert!(s.subnet.is_none() && s.labels.is_empty());
        // IPv6: a pool of each family, or EnableIPv6 alone (a random unique local /64).
        let s = parse(
            r#"{"Name":"v6","EnableIPv6":true,"IPAM":{"Config":[{"Subnet":"10.8.0.0/24"},
                {"Subnet":"fd00:8::/64","Gateway":"fd00:8::fe"}]}}"#,
        )
        .unwrap();
        assert_eq!(s.subnet.unwrap().to_string(), "10.8.0.0/24");
        assert_eq!(s.subnet6.unwrap().to_string(), "fd00:8::/64");
        assert_eq!(s.gateway6.unwrap().to_string(), "fd00:8::fe");
        assert!(s.ipv6);
        assert!(parse(r#"{"Name":"n","EnableIPv6":true}"#).unwrap().ipv6);
        for (body, word) in [
            (r#"{"Name":"n","Driver":"overlay"}"#, "overlay"),
            (
                r#"{"Name":"n","IPAM":{"Config":[{"Subnet":"fd00::/64"},{"Subnet":"fd01::/64"}]}}"#,
                "one IPv6",
            ),
            (
                r#"{"Name":"n","IPAM":{"Config":[{"Subnet":"fd00::/64","Gateway":"10.0.0.1"}]}}"#,
                "not in subnet",
            ),
            (
                r#"{"Name":"n","Options":{"com.docker.network.bridge.name":"x"}}"#,
                "options",
            ),
            (
                r#"{"Name":"n","IPAM":{"Config":[{"Subnet":"bad"}]}}"#,
                "subnet",
            ),
            (
                r#"{"Name":"n","IPAM":{"Config":[{"Gateway":"10.0.0.1"}]}}"#,
                "subnet",
            ),
            (r#"{"Driver":"bridge"}"#, "required"),
        ] {
            let e = parse(body).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{body}");
            assert!(e.message.contains(word), "{body}: {e}");
        }
        let e = parse(r#"{"Name":"bridge"}"#).unwrap_err();
        assert_eq!(e.status, StatusCode::FORBIDDEN);
    }

    #[test]
    fn dockers_default_network_is_ours() {
        assert_eq!(key("bridge"), DEFAULT_NETWORK);
        assert_eq!(key("back"), "back");
        let f: Value = serde_json::from_str(&docker_names(r#"{"name":["bridge","x"]}"#)).unwrap();
        assert_eq!(f["name"], json!([DEFAULT_NETWORK, "x"]));
        let f: Value = serde_json::from_str(&docker_names(r#"{"name":{"bridge":true}}"#)).unwrap();
        assert_eq!(f["name"][DEFAULT_NETWORK], true);
    }

    #[test]
    fn network_errors_get_dockers_status_codes() {
        let e: ApiError = NetworkError::NotFound("x".into()).into();
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        let e: ApiError = NetworkError::AlreadyExists("x".into()).into();
        assert_eq!(e.status, StatusCode::CONFLICT);
        let e: ApiError = NetworkError::InUse {
            name: "x".into(),
            containers: "web".into(),
        }
        .into();
        assert_eq!(e.status, StatusCode::FORBIDDEN);
    }
}
