//! `sqlx::migrate!` embeds `migrations/` at compile time, but on stable Rust
//! it cannot tell Cargo to watch that directory: without this a new migration
//! file is left out of an incremental build (what `sqlx migrate build-script`
//! generates).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
