//! The committed CRD YAML is what the types generate, and the schema documents every field.

use serde_json::Value;
use switchyard_crds::{CRD_DIRS, all_crds, crd_file_name, crd_yaml};

#[test]
fn committed_crd_yaml_is_current() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for dir in CRD_DIRS.map(|d| root.join(d)) {
        let stale: Vec<String> = all_crds()
            .iter()
            .map(|crd| (dir.join(crd_file_name(crd)), crd_yaml(crd)))
            .filter(|(path, yaml)| std::fs::read_to_string(path).unwrap_or_default() != *yaml)
            .map(|(path, _)| path.display().to_string())
            .collect();
        assert!(
            stale.is_empty(),
            "stale generated CRDs: {stale:?}; run `cargo run -p switchyard-crds --bin crdgen` and commit them"
        );
        let files = std::fs::read_dir(&dir).unwrap().count();
        assert_eq!(
            files,
            all_crds().len(),
            "{} holds a CRD the types no longer generate",
            dir.display()
        );
    }
}

/// Paths of schema properties without a description.
fn undocumented(schema: &Value, path: &str, out: &mut Vec<String>) {
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (name, prop) in props {
            let p = format!("{path}.{name}");
            let top_level =
                path.is_empty() && matches!(name.as_str(), "apiVersion" | "kind" | "metadata");
            if prop.get("description").is_none() && !top_level {
                out.push(p.clone());
            }
            undocumented(prop, &p, out);
        }
    }
    if let Some(items) = schema.get("items") {
        undocumented(items, &format!("{path}[]"), out);
    }
}

#[test]
fn every_field_has_a_description() {
    for crd in all_crds() {
        for version in &crd.spec.versions {
            let schema =
                serde_json::to_value(&version.schema.as_ref().unwrap().open_api_v3_schema).unwrap();
            let mut missing = Vec::new();
            undocumented(&schema, "", &mut missing);
            assert!(
                missing.is_empty(),
                "{}: fields without a description: {missing:?}",
                crd.spec.names.kind
            );
        }
    }
}

#[test]
fn schemas_avoid_what_kubernetes_1_20_rejects_or_mangles() {
    for crd in all_crds() {
        let yaml = crd_yaml(&crd);
        assert!(
            !yaml.contains("x-kubernetes-validations"),
            "CEL rules need Kubernetes 1.25+"
        );
        assert!(
            !yaml.contains("selectableFields"),
            "selectable fields need Kubernetes 1.30+"
        );
        assert!(
            !yaml.contains("nullable"),
            "1.20 strips nullable fields from kubectl explain"
        );
        assert!(
            !yaml.contains("default: ''"),
            "1.20 rejects empty-string defaults"
        );
    }
}

#[test]
fn pools_and_portgroups_are_map_lists_for_server_side_apply() {
    let net = serde_json::to_value(&all_crds()[0].spec.versions[0].schema).unwrap();
    let spec = &net["openAPIV3Schema"]["properties"]["spec"]["properties"];
    for (list, key) in [
        (&spec["portgroups"], "name"),
        (&spec["forward"]["properties"]["interfaces"], "dev"),
    ] {
        assert_eq!(list["x-kubernetes-list-type"], "map");
        assert_eq!(list["x-kubernetes-list-map-keys"], serde_json::json!([key]));
    }
    let mode = &spec["forward"]["properties"]["mode"]["enum"];
    assert_eq!(
        mode,
        &serde_json::json!([
            "nat",
            "route",
            "open",
            "bridge",
            "private",
            "vepa",
            "passthrough",
            "hostdev"
        ])
    );
}
