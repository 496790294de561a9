//! Writes every CRD to `deploy/crds/<name>.yaml` (or the directory given as the argument).

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/crds"));
    std::fs::create_dir_all(&dir)?;
    for crd in switchyard_crds::all_crds() {
        let path = dir.join(switchyard_crds::crd_file_name(&crd));
        std::fs::write(&path, switchyard_crds::crd_yaml(&crd))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
