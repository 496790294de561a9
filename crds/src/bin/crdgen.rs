//! Writes every CRD to `deploy/crds/` and `charts/switchyard/crds/` (or to the directories
//! given as arguments).

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut dirs: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    if dirs.is_empty() {
        dirs = switchyard_crds::CRD_DIRS
            .iter()
            .map(|d| root.join(d))
            .collect();
    }
    for dir in dirs {
        std::fs::create_dir_all(&dir)?;
        for crd in switchyard_crds::all_crds() {
            let path = dir.join(switchyard_crds::crd_file_name(&crd));
            std::fs::write(&path, switchyard_crds::crd_yaml(&crd))?;
            eprintln!("wrote {}", path.display());
        }
    }
    Ok(())
}
