//! The deployment files as a user relies on them: the Kubernetes manifests in
//! deploy/kubernetes and minio-compose.yml give every broker its own id and WAL
//! volume, one shared bucket prefix, and time to drain on SIGTERM.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use yaml_rust2::{Yaml, YamlLoader};

const POD_INDEX: &str = "metadata.labels['apps.kubernetes.io/pod-index']";

fn repo() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../"))
}

/// Every non-empty YAML document in one file.
fn load(path: &Path) -> Vec<Yaml> {
    let name = path.display();
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {name}: {e}"));
    let docs = YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{name} is not YAML: {e}"));
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

/// Every document in deploy/kubernetes/*.yaml; each must be a Kubernetes object.
fn manifests() -> Vec<Yaml> {
    let dir = repo().join("deploy/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *.yaml in {}", dir.display());
    let mut docs = Vec::new();
    for file in files {
        for doc in load(&file) {
            let ok = doc["apiVersion"].as_str().is_some() && doc["kind"].as_str().is_some();
            assert!(ok, "{}: a document without apiVersion and kind: {doc:?}", file.display());
            docs.push(doc);
        }
    }
    docs
}

fn of_kind<'a>(docs: &'a [Yaml], kind: &str) -> Vec<&'a Yaml> {
    docs.iter().filter(|d| d["kind"].as_str() == Some(kind)).collect()
}

fn only<'a>(docs: &'a [Yaml], kind: &str) -> &'a Yaml {
    let found = of_kind(docs, kind);
    assert_eq!(found.len(), 1, "deploy/kubernetes should hold exactly one {kind}, found {}", found.len());
    found[0]
}

/// A scalar as text: YAML reads `0` as an integer and `"0"` as a string.
fn text(y: &Yaml) -> Option<String> {
    match y {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// True if every label of a (non-empty) selector is among `labels`.
fn selects(selector: &Yaml, labels: &Yaml) -> bool {
    let pairs = |y: &Yaml| -> Vec<(String, String)> {
        y.as_hash()
            .map(|h| h.iter().filter_map(|(k, v)| Some((text(k)?, text(v)?))).collect())
            .unwrap_or_default()
    };
    let (wanted, have) = (pairs(selector), pairs(labels));
    !wanted.is_empty() && wanted.iter().all(|kv| have.contains(kv))
}

/// The `env` entry named `name` of a container (BadValue if there is none).
fn env_entry<'a>(container: &'a Yaml, name: &str) -> &'a Yaml {
    static MISSING: Yaml = Yaml::BadValue;
    let entries = container["env"].as_vec().map(Vec::as_slice).unwrap_or_default();
    entries.iter().find(|e| e["name"].as_str() == Some(name)).unwrap_or(&MISSING)
}

#[test]
fn statefulset_gives_each_broker_its_id_wal_and_drain_time() {
    let docs = manifests();
    let sts = only(&docs, "StatefulSet");
    let spec = &sts["spec"];
    let pod_labels = &spec["template"]["metadata"]["labels"];
    assert!(selects(&spec["selector"]["matchLabels"], pod_labels), "the StatefulSet misses its own pods");
    let pod = &spec["template"]["spec"];
    let containers = pod["containers"].as_vec().expect("the StatefulSet has no containers");
    let floe = containers
        .iter()
        .find(|c| env_entry(c, "FLOE_DATA_DIR")["value"].as_str().is_some())
        .expect("no container sets FLOE_DATA_DIR");

    let data_dir = env_entry(floe, "FLOE_DATA_DIR")["value"].as_str().unwrap().trim_end_matches('/');
    let claims: Vec<&str> = spec["volumeClaimTemplates"]
        .as_vec()
        .map(|v| v.iter().filter_map(|c| c["metadata"]["name"].as_str()).collect())
        .unwrap_or_default();
    assert!(!claims.is_empty(), "no volumeClaimTemplates: a WAL would not outlive its pod");
    let mounts = floe["volumeMounts"].as_vec().map(Vec::as_slice).unwrap_or_default();
    let wal_mounted = mounts.iter().any(|m| {
        m["name"].as_str().is_some_and(|n| claims.contains(&n))
            && m["mountPath"].as_str().map(|p| p.trim_end_matches('/')) == Some(data_dir)
    });
    assert!(wal_mounted, "no volume claim template {claims:?} is mounted at FLOE_DATA_DIR {data_dir}");

    let broker_id = env_entry(floe, "FLOE_BROKER_ID")["valueFrom"]["fieldRef"]["fieldPath"].as_str();
    assert_eq!(broker_id, Some(POD_INDEX), "FLOE_BROKER_ID must come from the pod-index label");

    // Kubernetes expands $(VAR) only for variables defined earlier in the list.
    let mut defined = Vec::new();
    for entry in floe["env"].as_vec().expect("the container has no env") {
        let name = entry["name"].as_str().expect("an env entry without a name");
        let value = entry["value"].as_str().unwrap_or("");
        for reference in value.split("$(").skip(1).filter_map(|r| r.split_once(')').map(|(v, _)| v)) {
            assert!(defined.contains(&reference), "{name} uses $({reference}) before it is defined");
        }
        defined.push(name);
    }

    let grace = pod["terminationGracePeriodSeconds"].as_i64().expect("no terminationGracePeriodSeconds");
    assert!(grace >= 60, "terminationGracePeriodSeconds {grace} is too short to drain and upload");

    let service_name = spec["serviceName"].as_str().expect("the StatefulSet has no serviceName");
    let services = of_kind(&docs, "Service");
    let headless = services
        .iter()
        .find(|s| s["metadata"]["name"].as_str() == Some(service_name))
        .unwrap_or_else(|| panic!("no Service named {service_name}, the StatefulSet's serviceName"));
    assert_eq!(headless["spec"]["clusterIP"].as_str(), Some("None"), "{service_name} must be headless");
    assert!(selects(&headless["spec"]["selector"], pod_labels), "{service_name} misses the brokers' pods");
    let ports: Vec<i64> = headless["spec"]["ports"]
        .as_vec()
        .map(|v| v.iter().filter_map(|p| p["port"].as_i64()).collect())
        .unwrap_or_default();
    for var in ["FLOE_ADVERTISE", "FLOE_RPC_ADVERTISE"] {
        let value = env_entry(floe, var)["value"].as_str().unwrap_or_else(|| panic!("{var} is not set"));
        assert!(value.contains(&format!(".{service_name}.")), "{var} {value} is not in {service_name}");
        let port: i64 = value.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).expect("HOST:PORT");
        assert!(ports.contains(&port), "{service_name} does not expose port {port} that {var} names");
    }

    let pdb = only(&docs, "PodDisruptionBudget");
    assert!(selects(&pdb["spec"]["selector"]["matchLabels"], pod_labels), "the PDB misses the brokers");

    let sts_name = sts["metadata"]["name"].as_str().expect("the StatefulSet has no name");
    let target = &only(&docs, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"];
    assert_eq!(target["kind"].as_str(), Some("StatefulSet"), "the autoscaler must scale the StatefulSet");
    assert_eq!(target["name"].as_str(), Some(sts_name), "the autoscaler targets another object");
}

/// A compose service's environment, as a map or as a list of `KEY=VALUE`.
fn environment(service: &Yaml) -> Vec<(String, String)> {
    match &service["environment"] {
        Yaml::Hash(h) => {
            h.iter().filter_map(|(k, v)| Some((text(k)?, text(v).unwrap_or_default()))).collect()
        }
        Yaml::Array(a) => a
            .iter()
            .filter_map(|e| e.as_str()?.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
            .collect(),
        _ => Vec::new(),
    }
}

#[test]
fn compose_runs_three_brokers_on_one_bucket() {
    let path = repo().join("minio-compose.yml");
    let docs = load(&path);
    assert_eq!(docs.len(), 1, "{} should be one YAML document", path.display());
    let compose = &docs[0];
    let services = compose["services"].as_hash().expect("minio-compose.yml has no services");

    let (mut ids, mut wals, mut stores) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    for (name, service) in services.iter() {
        let name = text(name).expect("a service name");
        if let Some(image) = service["image"].as_str().filter(|i| i.contains("minio/")) {
            let tag = image.rsplit_once(':').map(|(_, t)| t).filter(|t| !t.contains('/'));
            assert!(tag.is_some_and(|t| t != "latest"), "{name}: pin {image} to a release tag, not latest");
        }
        let env = environment(service);
        let get = |key: &str| env.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
        let Some(id) = get("FLOE_BROKER_ID") else { continue };
        assert!(ids.insert(id.clone()), "two brokers have FLOE_BROKER_ID {id}");
        stores.insert(get("FLOE_OBJECT_STORE").unwrap_or_else(|| panic!("{name} sets no FLOE_OBJECT_STORE")));

        let data_dir = get("FLOE_DATA_DIR").unwrap_or_else(|| panic!("{name} sets no FLOE_DATA_DIR"));
        let volumes = service["volumes"].as_vec().map(Vec::as_slice).unwrap_or_default();
        // Short form "SOURCE:TARGET[:MODE]", or long form with source and target.
        let wal = volumes.iter().find_map(|v| {
            let (source, target) = match v {
                Yaml::String(short) => {
                    let mut parts = short.split(':');
                    (parts.next().map(String::from), parts.next().map(String::from))
                }
                _ => (text(&v["source"]), text(&v["target"])),
            };
            source.filter(|_| target.as_deref() == Some(data_dir.as_str()))
        });
        let wal = wal.unwrap_or_else(|| panic!("{name} mounts no volume at FLOE_DATA_DIR {data_dir}"));
        assert!(!compose["volumes"][wal.as_str()].is_badvalue(), "{name}: {wal} is not a named volume");
        assert!(wals.insert(wal.clone()), "two brokers share the WAL volume {wal}");

        let advertise = get("FLOE_ADVERTISE").unwrap_or_else(|| panic!("{name} sets no FLOE_ADVERTISE"));
        let ports = service["ports"].as_vec().map(Vec::as_slice).unwrap_or_default();
        let published = ports.iter().filter_map(text).any(|p| p.starts_with(&format!("{advertise}:")));
        assert!(published, "{name} advertises {advertise} but does not publish it on the host");
        // Docker's default is 10s; this reads the "90s" and "2m" forms.
        let grace = service["stop_grace_period"].as_str().unwrap_or("10s");
        let seconds = match grace.strip_suffix('m') {
            Some(m) => m.parse::<u64>().ok().map(|m| m * 60),
            None => grace.trim_end_matches('s').parse::<u64>().ok(),
        };
        assert!(seconds.is_some_and(|s| s >= 60), "{name}: stop_grace_period {grace} is too short to drain");
    }
    assert_eq!(ids.len(), 3, "minio-compose.yml should run three brokers, found ids {ids:?}");
    assert_eq!(stores.len(), 1, "the brokers must share one FLOE_OBJECT_STORE, found {stores:?}");
}
