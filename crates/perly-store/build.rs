//! Rebuilds the crate when a migration file is added or removed.
//!
//! `sqlx::migrate!` embeds `migrations/{sqlite,postgres}` at compile time,
//! and cargo only reruns the macro when a file it already knows about
//! changes: a new migration left the binary and the tests migrating to the
//! last build's list (the migration-pairing test failed for a reason not
//! in the code). This is the build script sqlx's documentation recommends.
fn main() {
    // Cargo scans a directory given here for changes anywhere under it.
    println!("cargo:rerun-if-changed=migrations");
}
