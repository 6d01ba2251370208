//! A third-party backend compiles the storage API without any database stack.

use std::process::Command;

#[test]
fn cargo_tree_shows_no_sea_orm_and_no_sqlx() {
    // Normal and build dependencies: what a user of this backend compiles.
    let output = Command::new(env!("CARGO"))
        .args(["tree", "--offline", "-p", env!("CARGO_PKG_NAME"), "-e", "normal,build", "--prefix", "none"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo runs");
    let tree = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "cargo tree failed: {}", String::from_utf8_lossy(&output.stderr));
    assert!(tree.contains("homepot-storage"), "{tree}");
    let database: Vec<&str> = tree.lines().filter(|l| l.starts_with("sea-") || l.starts_with("sqlx")).collect();
    assert!(database.is_empty(), "database crates in the tree: {database:?}");
}
